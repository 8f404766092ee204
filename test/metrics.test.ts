import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import express from 'express';
import request from 'supertest';
import { ConfigError, loadConfig } from '../src/config';
import { errors } from '../src/errors';
import { ImageRepository } from '../src/images/image-repository';
import { newImageId } from '../src/images/image-id';
import { createMetrics } from '../src/web/metrics';
import { makeImage } from './helpers/images';
import {
  loggedInAgent,
  startTestStack,
  uploadFile,
  uploadFixture,
  type TestStack,
} from './helpers/stack';

const TOKEN = 'metrics-token-for-tests-0123456789';

/** Read one sample from the Prometheus text format: the metric with all of `labels`, or undefined. */
function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match?.[1] !== name) continue;
    const found = new Map<string, string>();
    for (const pair of (match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) {
      found.set(pair[1] ?? '', pair[2] ?? '');
    }
    if (Object.entries(labels).every(([key, value]) => found.get(key) === value)) {
      return Number(match[3]);
    }
  }
  return undefined;
}

/** Add up every sample of a metric, whatever its labels. */
function total(text: string, name: string): number {
  const pattern = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm');
  return [...text.matchAll(pattern)].reduce((sum, match) => sum + Number(match[1]), 0);
}

async function scrape(url: string): Promise<string> {
  const response = await request(url).get('/metrics').expect(200);
  return response.text;
}

describe('GET /metrics on the full app', () => {
  let stack: TestStack;
  let agent: Awaited<ReturnType<typeof loggedInAgent>>;

  beforeAll(async () => {
    stack = await startTestStack();
    agent = await loggedInAgent(stack.url);
  });

  afterAll(async () => {
    await stack.stop();
  });

  it('answers a loopback client with the Prometheus text format', async () => {
    const response = await request(stack.url).get('/metrics');

    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(response.headers['cache-control']).toBe('no-store');
    expect(response.headers['set-cookie']).toBeUndefined();
    expect(response.text).toMatch(/^# TYPE s3gate_http_requests_total counter$/m);
    expect(response.text).toMatch(/^process_cpu_user_seconds_total /m);
  });

  it('counts image requests by route pattern and status', async () => {
    const { id } = await uploadFixture(agent);
    const before = await scrape(stack.url);
    await agent.get(`/image/${id}`).redirects(0).expect(302);
    await agent.get(`/image/${newImageId()}`).expect(404);
    const after = await scrape(stack.url);
    const count = (text: string, status: string) =>
      sample(text, 's3gate_http_requests_total', { method: 'GET', route: '/image/:id', status }) ??
      0;

    expect(count(after, '302') - count(before, '302')).toBe(1);
    expect(count(after, '404') - count(before, '404')).toBe(1);
    expect(after).not.toContain(id);
  });

  it('counts signed-URL cache misses, then hits', async () => {
    const { id } = await uploadFixture(agent);
    const before = await scrape(stack.url);
    await agent.get(`/image/${id}`).redirects(0).expect(302);
    await agent.get(`/image/${id}`).redirects(0).expect(302);
    const after = await scrape(stack.url);
    const delta = (name: string) => (sample(after, name) ?? 0) - (sample(before, name) ?? 0);

    expect(delta('s3gate_signed_url_cache_misses_total')).toBe(1);
    expect(delta('s3gate_signed_url_cache_hits_total')).toBe(1);
    expect(sample(after, 's3gate_signed_url_lifetime_clamped_total')).toBe(0);
  });

  it('records the size and duration of uploads', async () => {
    const bytes = await makeImage('png', 64, 48);
    const before = await scrape(stack.url);
    await uploadFixture(agent, bytes);
    const rejected = await uploadFile(agent, Buffer.from('not an image'), 'x.png');
    const after = await scrape(stack.url);
    const delta = (name: string, labels = {}) =>
      (sample(after, name, labels) ?? 0) - (sample(before, name, labels) ?? 0);

    expect(rejected.status).toBe(415);
    expect(delta('s3gate_upload_size_bytes_sum')).toBe(bytes.length);
    expect(delta('s3gate_upload_size_bytes_count')).toBe(1);
    expect(delta('s3gate_upload_duration_seconds_count', { status: '201' })).toBe(1);
    expect(delta('s3gate_upload_duration_seconds_count', { status: '415' })).toBe(1);
  });

  it('answers 403 to a loopback request relayed by a proxy', async () => {
    const response = await request(stack.url).get('/metrics').set('X-Forwarded-For', '127.0.0.1');

    expect(response.status).toBe(403);
    expect(response.text).toMatch(/Set METRICS_TOKEN/);
    expect(response.text).not.toMatch(/s3gate_/);
  });
});

describe('S3 errors in metrics', () => {
  let stack: TestStack;
  let agent: Awaited<ReturnType<typeof loggedInAgent>>;

  beforeAll(async () => {
    stack = await startTestStack({ DELIVERY_MODE: 'proxy' });
    agent = await loggedInAgent(stack.url);
  });

  afterAll(async () => {
    await stack.stop();
  });

  it('counts a read of a missing object as image_not_found', async () => {
    const { id } = await uploadFixture(agent);
    const image = await new ImageRepository(stack.runtime.database.db).findById(id);
    await stack.runtime.s3Client.send(
      new DeleteObjectCommand({ Bucket: stack.runtime.config.s3.bucket, Key: image?.key }),
    );
    await agent.get(`/image/${id}`).expect(404);
    const text = await scrape(stack.url);

    expect(
      sample(text, 's3gate_s3_errors_total', { operation: 'read', kind: 'image_not_found' }),
    ).toBe(1);
  });

  it('does not count a 304 from S3', async () => {
    const { id } = await uploadFixture(agent);
    // Without an ETag in the row, the proxy sends If-None-Match on to S3, which responds with 304.
    // The row changes before any request reads it, because the app caches image rows on SQLite
    // and a write outside ImageRepository does not reach that cache.
    await stack.runtime.database.db
      .updateTable('images')
      .set({ etag: null })
      .where('id', '=', id)
      .execute();
    expect((await new ImageRepository(stack.runtime.database.db).findById(id))?.etag).toBeNull();
    const etag = (await agent.get(`/image/${id}`).expect(200)).headers.etag ?? '';
    expect(etag).not.toBe('');
    const before = await scrape(stack.url);
    await agent.get(`/image/${id}`).set('If-None-Match', etag).expect(304);
    const after = await scrape(stack.url);

    expect(total(after, 's3gate_s3_errors_total')).toBe(total(before, 's3gate_s3_errors_total'));
  });

  // Runs last in this block: it stops the stack's S3 server.
  it('counts a write to a stopped S3 server as storage_unavailable', async () => {
    await stack.runtime.embeddedS3?.close();
    const response = await uploadFile(agent, await makeImage('png'), 'down.png', 'image/png');
    const text = await scrape(stack.url);

    expect(response.status).toBe(503);
    expect(
      sample(text, 's3gate_s3_errors_total', { operation: 'write', kind: 'storage_unavailable' }),
    ).toBe(1);
  });
});

describe('METRICS_TOKEN', () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack({ METRICS_TOKEN: TOKEN });
  });

  afterAll(async () => {
    await stack.stop();
  });

  it('answers 401 with a challenge without the token, even on loopback', async () => {
    const response = await request(stack.url).get('/metrics');

    expect(response.status).toBe(401);
    expect(response.headers['www-authenticate']).toBe('Bearer realm="metrics"');
    expect(response.text).not.toMatch(/s3gate_/);
  });

  it.each([
    ['a wrong token', `Bearer ${TOKEN.slice(0, -1)}x`],
    ['a longer token', `Bearer ${TOKEN}0`],
    ['the token as Basic', `Basic ${TOKEN}`],
    ['the bare token', TOKEN],
  ])('answers 401 to %s', async (_name, authorization) => {
    const response = await request(stack.url).get('/metrics').set('Authorization', authorization);

    expect(response.status).toBe(401);
  });

  it('answers 200 to the token', async () => {
    const response = await request(stack.url)
      .get('/metrics')
      .set('Authorization', `Bearer ${TOKEN}`);

    expect(response.status).toBe(200);
    expect(response.text).toMatch(/^s3gate_http_requests_total\{/m);
  });
});

describe('metrics settings', () => {
  it('leaves /metrics out with METRICS_ENABLED=false', async () => {
    const stack = await startTestStack({ METRICS_ENABLED: 'false' });
    try {
      expect((await request(stack.url).get('/metrics')).status).toBe(404);
    } finally {
      await stack.stop();
    }
  });

  it('rejects a short METRICS_TOKEN without showing it', () => {
    let thrown: unknown;
    try {
      loadConfig({ METRICS_TOKEN: 'short-token' });
    } catch (error) {
      thrown = error;
    }

    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as ConfigError).problems).toEqual([
      'METRICS_TOKEN: must be at least 16 characters; generate one with `openssl rand -hex 32`',
    ]);
  });
});

describe('createMetrics', () => {
  it('keeps the numbers of two instances apart', async () => {
    const first = createMetrics({ processMetrics: false });
    const second = createMetrics({ processMetrics: false });
    first.countS3Error(errors.storageTimeout(), 'read');

    expect(
      sample(await first.registry.metrics(), 's3gate_s3_errors_total', { kind: 'storage_timeout' }),
    ).toBe(1);
    expect(sample(await second.registry.metrics(), 's3gate_s3_errors_total')).toBeUndefined();
  });

  it('reads the signer totals at each scrape', async () => {
    const stats = { hits: 5, misses: 2, clamped: 1 };
    const metrics = createMetrics({ signer: { stats }, processMetrics: false });
    const first = await metrics.registry.metrics();
    stats.hits = 7;
    const second = await metrics.registry.metrics();

    expect(sample(first, 's3gate_signed_url_cache_hits_total')).toBe(5);
    expect(sample(first, 's3gate_signed_url_cache_misses_total')).toBe(2);
    expect(sample(first, 's3gate_signed_url_lifetime_clamped_total')).toBe(1);
    expect(sample(second, 's3gate_signed_url_cache_hits_total')).toBe(7);
  });

  it('rejects a token shorter than 16 characters', () => {
    expect(() => createMetrics({ token: 'too-short' })).toThrow(/at least 16 characters/);
  });

  // A client on another host cannot be produced on this loopback-only test network, so a
  // middleware rewrites the socket address that the endpoint reads.
  it('answers 403 to a client that is not on loopback', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const app = express();
    app.use((req, _res, next) => {
      Object.defineProperty(req.socket, 'remoteAddress', { value: '192.0.2.10' });
      next();
    });
    app.use(metrics.router);
    const server = await new Promise<Server>((resolve) => {
      const started = app.listen(0, '127.0.0.1', () => resolve(started));
    });
    try {
      const { port } = server.address() as AddressInfo;
      const response = await request(`http://127.0.0.1:${port}`).get('/metrics');

      expect(response.status).toBe(403);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
