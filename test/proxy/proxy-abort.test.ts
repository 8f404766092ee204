import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import request from 'supertest';
import type { ImageRecord } from '../../src/images/image-repository';
import {
  asBytes,
  bodyOf,
  createImageStore,
  createProxyApp,
  startEmbeddedS3Fixture,
  TEST_CLIENT_SETTINGS,
  type EmbeddedS3Fixture,
} from './proxy-fixture';

const OBJECT_SIZE_BYTES = 20 * 1024 * 1024;
const ABORTED_GETS = 60;
const CONCURRENT_GETS = 10;
// Larger than the number of aborted GETs, so that leaked sockets show up as a count to assert on
// instead of as a pool that hangs the test.
const MAX_SOCKETS = 64;

let fixture: EmbeddedS3Fixture;
let agent: http.Agent;
let client: S3Client;
let server: http.Server;
let baseUrl: string;
let image: ImageRecord;
let digest: string;
const logger = { warn: jest.fn(), error: jest.fn() };

beforeAll(async () => {
  fixture = await startEmbeddedS3Fixture();
  // createS3Client builds its socket pool inside, so this client has the same settings and an
  // agent that the test can count.
  agent = new http.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS });
  client = new S3Client({
    ...TEST_CLIENT_SETTINGS,
    endpoint: fixture.s3.endpoint,
    requestHandler: new NodeHttpHandler({
      httpAgent: agent,
      connectionTimeout: 3000,
      requestTimeout: 30_000,
    }),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });

  const store = createImageStore(client);
  const bytes = randomBytes(OBJECT_SIZE_BYTES);
  digest = sha256(bytes);
  image = await store.storeImage(bytes);

  server = http.createServer(createProxyApp(client, store.images, logger));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  client.destroy();
  await fixture.close();
});

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Sockets of the S3 client's pool that are lent to a request right now. */
function socketsInUse(): number {
  return Object.values(agent.sockets).reduce((count, list) => count + (list?.length ?? 0), 0);
}

function freeSockets(): number {
  return Object.values(agent.freeSockets).reduce((count, list) => count + (list?.length ?? 0), 0);
}

/** Wait until no socket is in use, for at most 100 short pauses; the caller asserts the count. */
async function settlePool(): Promise<void> {
  for (let attempt = 0; attempt < 100 && socketsInUse() > 0; attempt++) await delay(20);
}

/** GET the image, read until the first kilobyte arrived, then drop the connection. */
function abortAfterFirstKilobyte(): Promise<number | undefined> {
  return new Promise((resolve) => {
    let status: number | undefined;
    const req = http.get(`${baseUrl}/image/${image.id}`, { agent: false }, (res) => {
      status = res.statusCode;
      let receivedBytes = 0;
      res.on('data', (chunk: Buffer) => {
        receivedBytes += chunk.length;
        if (receivedBytes >= 1024) req.destroy();
      });
      // Destroying the request ends the response with an "aborted" error; that is the point.
      res.on('error', () => undefined);
    });
    req.on('error', () => undefined);
    req.on('close', () => {
      resolve(status);
    });
  });
}

describe('GET /image/:id client abort, 20 MiB object', () => {
  it('60 aborts leave pool idle, next GET returns 200', async () => {
    const processErrors: unknown[] = [];
    const recordProcessError = (error: unknown) => processErrors.push(error);
    process.on('uncaughtException', recordProcessError);
    process.on('unhandledRejection', recordProcessError);

    try {
      // Idle value of the pool, after one complete read
      const warmUp = await asBytes(request(baseUrl).get(`/image/${image.id}`));
      await settlePool();
      const idleInUse = socketsInUse();

      // Aborted GETs, in rounds so that the 2-core test machine is not swamped
      const statuses: (number | undefined)[] = [];
      for (let round = 0; round < ABORTED_GETS / CONCURRENT_GETS; round++) {
        const batch = Array.from({ length: CONCURRENT_GETS }, () => abortAfterFirstKilobyte());
        statuses.push(...(await Promise.all(batch)));
      }
      await settlePool();
      const inUseAfterAborts = socketsInUse();

      // Normal GET
      const started = performance.now();
      const res = await asBytes(request(baseUrl).get(`/image/${image.id}`));
      const elapsedMs = performance.now() - started;
      await settlePool();

      expect(warmUp.status).toBe(200);
      expect(statuses).toEqual(Array.from({ length: ABORTED_GETS }, () => 200));
      expect(inUseAfterAborts).toBe(idleInUse);
      expect(res.status).toBe(200);
      expect(elapsedMs).toBeLessThan(5000);
      expect(sha256(bodyOf(res))).toBe(digest);
      expect(socketsInUse()).toBe(idleInUse);
      expect(freeSockets()).toBeLessThanOrEqual(MAX_SOCKETS);
      expect(processErrors).toEqual([]);
      expect(logger.warn).not.toHaveBeenCalled();
      expect(logger.error).not.toHaveBeenCalled();
    } finally {
      process.off('uncaughtException', recordProcessError);
      process.off('unhandledRejection', recordProcessError);
    }
  }, 120_000);
});
