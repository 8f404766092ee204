import fs from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import express, { type Express, type Request } from 'express';
import request from 'supertest';
import {
  EMBEDDED_S3_CREDENTIALS,
  REDIRECT_CACHE_CONTROL,
  createBlockErrorHandler,
  createImageRouter,
  createProxyDelivery,
  createS3Client,
  createUploadHandler,
  createUrlSigner,
  newImageId,
  startEmbeddedS3,
  type EmbeddedS3,
  type ImageRecord,
  type UploadedImages,
  type UrlSigner,
} from '../src';
import { makeImage } from './helpers/images';

/**
 * A host app that is not s3gate: its own fake login (a cookie it sets itself, no passport and
 * no session), its own metadata in a Map, and only the building blocks from the package entry.
 * Images are visible to their uploader and to "admin".
 */

const BUCKET = 'host-images';
const MAX_AGE_SECONDS = 31_536_000;
const STORED_CACHE_CONTROL = `private, max-age=${MAX_AGE_SECONDS}, immutable`;
const WINDOW_SECONDS = 3600;

let directory: string;
let s3: EmbeddedS3;
let client: S3Client;
let server: Server;
let baseUrl: string;
let clockMs: number;
let signer: UrlSigner;
const images = new Map<string, ImageRecord>();
const serverErrors: unknown[] = [];

function userOf(req: Request): string | undefined {
  const match = /(?:^|;\s*)host_user=([a-z]+)/.exec(req.headers.cookie ?? '');
  return match?.[1];
}

function createHostApp(): Express {
  const app = express();
  app.set('etag', false);

  // The host's own login: POST /login?user=alice sets a cookie, nothing else.
  app.post('/login', (req, res) => {
    const user = typeof req.query.user === 'string' ? req.query.user : '';
    res.cookie('host_user', user, { httpOnly: true, sameSite: 'lax' });
    res.status(204).end();
  });

  const imageRoutes = {
    findImage: (id: string) => Promise.resolve(images.get(id)),
    isSignedIn: (req: Request) => userOf(req) !== undefined,
    authorize: (req: Request, image: ImageRecord) =>
      userOf(req) === 'admin' || image.uploadedBy === userOf(req),
    cacheMaxAgeSeconds: MAX_AGE_SECONDS,
  };
  app.use(createImageRouter({ ...imageRoutes, mode: 'redirect', signer }));
  app.use(
    '/proxied',
    createImageRouter({
      ...imageRoutes,
      mode: 'proxy',
      proxy: createProxyDelivery({ client, bucket: BUCKET, cacheMaxAgeSeconds: MAX_AGE_SECONDS }),
    }),
  );

  app.post(
    '/upload',
    (req, res, next) => {
      if (userOf(req) === undefined) res.status(401).end();
      else next();
    },
    createUploadHandler({
      client,
      bucket: BUCKET,
      keyPrefix: 'uploads/',
      maxBytes: 1024 * 1024,
      cacheMaxAgeSeconds: MAX_AGE_SECONDS,
      uploaderId: (req) => userOf(req) ?? null,
      onStored: (image) => {
        const record: ImageRecord = { ...image, createdAt: new Date() };
        images.set(record.id, record);
        return Promise.resolve(record);
      },
    }),
    (_req, res) => {
      const uploaded = res.locals.uploadedImages as UploadedImages;
      res.status(201).json({ ids: uploaded.map((image) => image.id) });
    },
  );

  app.use(createBlockErrorHandler({ onServerError: (error) => serverErrors.push(error) }));
  return app;
}

/** Listen on loopback only and return the origin. */
async function listen(app: Express): Promise<[Server, string]> {
  const listening = await new Promise<Server>((resolve) => {
    const started = app.listen(0, '127.0.0.1', () => resolve(started));
  });
  return [listening, `http://127.0.0.1:${(listening.address() as AddressInfo).port}`];
}

const cookies = new Map<string, string>();

/** Sign in through the host app's own login route; returns its cookie. */
async function signIn(user: string): Promise<string> {
  const known = cookies.get(user);
  if (known) return known;
  const response = await request(baseUrl).post(`/login?user=${user}`).expect(204);
  const cookie = response.headers['set-cookie']?.[0]?.split(';')[0] ?? '';
  cookies.set(user, cookie);
  return cookie;
}

async function upload(user: string, bytes: Buffer, filename = 'photo.png') {
  return request(baseUrl)
    .post('/upload')
    .set('Cookie', await signIn(user))
    .set('Accept', 'application/json')
    .attach('file', bytes, { filename, contentType: 'application/octet-stream' });
}

async function uploadedId(user: string, bytes: Buffer): Promise<string> {
  const response = await upload(user, bytes);
  const id = (response.body as { ids?: string[] }).ids?.[0];
  if (response.status !== 201 || !id) throw new Error(`upload failed with ${response.status}`);
  return id;
}

async function getImage(user: string | undefined, id: string, prefix = '', headers = {}) {
  const test = request(baseUrl).get(`${prefix}/image/${id}`).set(headers).redirects(0).buffer(true);
  return user === undefined ? test : test.set('Cookie', await signIn(user));
}

beforeAll(async () => {
  directory = await fs.mkdtemp(path.join(os.tmpdir(), 's3gate-blocks-'));
  s3 = await startEmbeddedS3({ directory, bucket: BUCKET, port: 0 });
  client = createS3Client({
    region: 'us-east-1',
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: EMBEDDED_S3_CREDENTIALS,
  });
  clockMs = Date.now();
  signer = createUrlSigner({
    client,
    bucket: BUCKET,
    windowSeconds: WINDOW_SECONDS,
    minValiditySeconds: 600,
    now: () => clockMs,
  });
  [server, baseUrl] = await listen(createHostApp());
});

// The host app's error handler reports every 5xx here; none is expected.
afterEach(() => {
  expect(serverErrors).toEqual([]);
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  client.destroy();
  await s3.close();
  await fs.rm(directory, { recursive: true, force: true });
});

describe('upload handler in a host app', () => {
  it('answers 201 and stores the object with caching metadata', async () => {
    const bytes = await makeImage('png');
    const response = await upload('alice', bytes);
    const id = (response.body as { ids: string[] }).ids[0] ?? '';
    const record = images.get(id);
    const object = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: record?.key }));

    expect(response.status).toBe(201);
    expect(record?.key).toMatch(new RegExp(`^uploads/${id}\\.png$`));
    expect(record?.uploadedBy).toBe('alice');
    expect(record?.sizeBytes).toBe(bytes.length);
    expect(object.CacheControl).toBe(STORED_CACHE_CONTROL);
    expect(object.ContentType).toBe('image/png');
    expect(Date.parse(object.ExpiresString ?? '')).toBeGreaterThan(
      Date.now() + 364 * 24 * 3600 * 1000,
    );
  });

  it('answers 415 as JSON for a file that is not an image', async () => {
    const before = images.size;
    const response = await upload('alice', Buffer.from('<html>not an image</html>'), 'x.png');

    expect(response.status).toBe(415);
    expect(response.headers['cache-control']).toBe('no-store');
    expect(response.body).toMatchObject({ error: { status: 415, code: 'UNSUPPORTED_IMAGE_TYPE' } });
    expect(images.size).toBe(before);
  });
});

describe('image router in redirect mode in a host app', () => {
  it('answers 302 with exactly the no-store headers', async () => {
    const id = await uploadedId('alice', await makeImage('png'));
    const response = await getImage('alice', id);

    expect(response.status).toBe(302);
    expect(response.headers['cache-control']).toBe(REDIRECT_CACHE_CONTROL);
    expect(response.headers.pragma).toBe('no-cache');
    expect(response.headers.expires).toBe('0');
    expect(response.headers.location).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/host-images\/uploads\//);
  });

  it('sets nosniff without helmet in the host app', async () => {
    const id = await uploadedId('alice', await makeImage('png'));
    const response = await getImage('alice', id);

    expect(response.headers['x-content-type-options']).toBe('nosniff');
  });

  it('sends a URL that returns the uploaded bytes', async () => {
    const bytes = await makeImage('jpeg');
    const id = await uploadedId('alice', bytes);
    const location = (await getImage('alice', id)).headers.location ?? '';
    const object = await fetch(location);

    expect(object.status).toBe(200);
    expect(Buffer.from(await object.arrayBuffer()).equals(bytes)).toBe(true);
    expect(object.headers.get('cache-control')).toBe(STORED_CACHE_CONTROL);
  });

  it('keeps one URL per signing window', async () => {
    const id = await uploadedId('alice', await makeImage('png'));
    const windowStartMs = signer.windowStart() * 1000;
    const first = (await getImage('alice', id)).headers.location;
    clockMs = windowStartMs + WINDOW_SECONDS * 1000 - 1;
    const lastInWindow = (await getImage('alice', id)).headers.location;
    clockMs = windowStartMs + WINDOW_SECONDS * 1000;
    const nextWindow = (await getImage('alice', id)).headers.location;
    clockMs = Date.now();

    expect(first).toBeDefined();
    expect(lastInWindow).toBe(first);
    expect(nextWindow).not.toBe(first);
  });

  it('answers 401 with no-store to an anonymous request', async () => {
    const id = await uploadedId('alice', await makeImage('png'));
    const response = await getImage(undefined, id);

    expect(response.status).toBe(401);
    expect(response.headers['cache-control']).toBe('no-store');
    expect(response.headers.location).toBeUndefined();
  });

  it('sends an anonymous browser navigation to the login page', async () => {
    const id = await uploadedId('alice', await makeImage('png'));
    const response = await getImage(undefined, id, '', { Accept: 'text/html' });

    expect(response.status).toBe(303);
    expect(response.headers.location).toBe(`/login?next=${encodeURIComponent(`/image/${id}`)}`);
  });

  it('answers the same 404 for unknown, hidden and malformed ids', async () => {
    const id = await uploadedId('alice', await makeImage('png'));
    const unknown = await getImage('bob', newImageId());
    const hidden = await getImage('bob', id);
    const malformed = await getImage('bob', `${id}x`);

    for (const response of [unknown, hidden, malformed]) {
      expect(response.status).toBe(404);
      expect(response.text).toBe('Image not found.\n');
      expect(response.headers['cache-control']).toBe('no-store');
      expect(response.headers.location).toBeUndefined();
    }
  });

  it('lets the authorize hook show an image to another user', async () => {
    const id = await uploadedId('alice', await makeImage('png'));

    expect((await getImage('admin', id)).status).toBe(302);
  });
});

describe('image router in proxy mode in a host app', () => {
  it('answers 200 with the bytes and caching headers', async () => {
    const bytes = await makeImage('png');
    const id = await uploadedId('alice', bytes);
    const response = await getImage('alice', id, '/proxied');

    expect(response.status).toBe(200);
    expect(Buffer.compare(response.body as Buffer, bytes)).toBe(0);
    expect(response.headers['content-type']).toBe('image/png');
    expect(response.headers['cache-control']).toBe(STORED_CACHE_CONTROL);
    expect(response.headers.etag).toMatch(/^"[0-9a-f]{32}"$/);
  });

  it('answers 206 with the requested bytes for a range', async () => {
    const bytes = await makeImage('png');
    const id = await uploadedId('alice', bytes);
    const response = await getImage('alice', id, '/proxied', { Range: 'bytes=0-9' });

    expect(response.status).toBe(206);
    expect(response.headers['content-range']).toBe(`bytes 0-9/${bytes.length}`);
    expect(Buffer.compare(response.body as Buffer, bytes.subarray(0, 10))).toBe(0);
  });

  it('answers 304 to a matching If-None-Match', async () => {
    const id = await uploadedId('alice', await makeImage('png'));
    const etag = (await getImage('alice', id, '/proxied')).headers.etag ?? '';
    const response = await getImage('alice', id, '/proxied', { 'If-None-Match': etag });

    expect(response.status).toBe(304);
    expect(response.headers.etag).toBe(etag);
    expect(response.headers['cache-control']).toBe(STORED_CACHE_CONTROL);
  });

  it('answers 401 and 404 as redirect mode does', async () => {
    const id = await uploadedId('alice', await makeImage('png'));

    expect((await getImage(undefined, id, '/proxied')).status).toBe(401);
    expect((await getImage('bob', id, '/proxied')).status).toBe(404);
  });
});

describe('image router without passport and without isSignedIn', () => {
  it('fails with a 500 whose logged error names the fix', async () => {
    const app = express();
    const errors: unknown[] = [];
    app.use(
      createImageRouter({
        findImage: () => Promise.resolve(undefined),
        signer,
        cacheMaxAgeSeconds: 60,
      }),
    );
    app.use(createBlockErrorHandler({ onServerError: (error) => errors.push(error) }));
    const [bare, url] = await listen(app);
    try {
      const response = await request(url).get(`/image/${newImageId()}`);

      expect(response.status).toBe(500);
      expect(String(errors[0])).toMatch(
        /passport is not mounted.*Pass an `isSignedIn\(req\)` option/,
      );
    } finally {
      await new Promise((resolve) => bare.close(resolve));
    }
  });
});

describe('block options', () => {
  const bad: [string, () => unknown, RegExp][] = [
    [
      'signer without a client',
      () =>
        createUrlSigner({
          client: {} as unknown as S3Client,
          bucket: 'b',
          windowSeconds: 60,
          minValiditySeconds: 0,
        }),
      /createUrlSigner: `client` must be an S3Client.*createS3Client/,
    ],
    [
      'signer with an empty bucket',
      () => createUrlSigner({ client, bucket: '', windowSeconds: 60, minValiditySeconds: 0 }),
      /createUrlSigner: `bucket` must be a non-empty string, got ""/,
    ],
    [
      'signer with a zero window',
      () => createUrlSigner({ client, bucket: 'b', windowSeconds: 0, minValiditySeconds: 0 }),
      /createUrlSigner: `windowSeconds` must be a whole number >= 1, got 0\. Use the signing window/,
    ],
    [
      'signer with the window as a string',
      () =>
        createUrlSigner({
          client,
          bucket: 'b',
          windowSeconds: '3600' as unknown as number,
          minValiditySeconds: 0,
        }),
      /`windowSeconds` must be a whole number >= 1, got "3600"/,
    ],
    [
      'router in redirect mode without a signer',
      () =>
        createImageRouter({ findImage: () => Promise.resolve(undefined), cacheMaxAgeSeconds: 60 }),
      /redirect mode needs a `signer`\. Create one with createUrlSigner/,
    ],
    [
      'router in proxy mode without a delivery',
      () =>
        createImageRouter({
          mode: 'proxy',
          findImage: () => Promise.resolve(undefined),
          cacheMaxAgeSeconds: 60,
        }),
      /proxy mode needs a `proxy` delivery function\. Create one with createProxyDelivery/,
    ],
    [
      'router with an unknown mode',
      () =>
        createImageRouter({
          mode: 'stream' as 'proxy',
          findImage: () => Promise.resolve(undefined),
          cacheMaxAgeSeconds: 60,
        }),
      /`mode` must be "redirect" or "proxy", got "stream"/,
    ],
    [
      'router without findImage',
      () =>
        createImageRouter({
          signer,
          cacheMaxAgeSeconds: 60,
        } as unknown as Parameters<typeof createImageRouter>[0]),
      /`findImage` must be a function, got undefined/,
    ],
    [
      'router with a login URL on another site',
      () =>
        createImageRouter({
          signer,
          findImage: () => Promise.resolve(undefined),
          cacheMaxAgeSeconds: 60,
          loginPath: '//evil.example/login',
        }),
      /`loginPath` must be a path on this site/,
    ],
    [
      'proxy delivery with a negative max-age',
      () => createProxyDelivery({ client, bucket: 'b', cacheMaxAgeSeconds: -1 }),
      /createProxyDelivery: `cacheMaxAgeSeconds` must be a whole number >= 0, got -1/,
    ],
    [
      'upload handler with a fractional size limit',
      () =>
        createUploadHandler({
          client,
          bucket: 'b',
          keyPrefix: '',
          maxBytes: 1.5,
          cacheMaxAgeSeconds: 60,
          onStored: (image) => Promise.resolve(image),
        }),
      /createUploadHandler: `maxBytes` must be a whole number >= 1, got 1\.5/,
    ],
    [
      'upload handler accepting SVG',
      () =>
        createUploadHandler({
          client,
          bucket: 'b',
          keyPrefix: '',
          maxBytes: 100,
          cacheMaxAgeSeconds: 60,
          acceptedTypes: { svg: { contentType: 'image/svg+xml', extension: 'svg' } },
          onStored: (image) => Promise.resolve(image),
        }),
      /must not contain SVG/,
    ],
    [
      'upload handler without onStored',
      () =>
        createUploadHandler({
          client,
          bucket: 'b',
          keyPrefix: '',
          maxBytes: 100,
          cacheMaxAgeSeconds: 60,
        } as unknown as Parameters<typeof createUploadHandler>[0]),
      /`onStored` must be a function, got undefined\. Pass a function that records/,
    ],
  ];

  it.each(bad)('rejects %s at construction', (_name, create, message) => {
    expect(create).toThrow(TypeError);
    expect(create).toThrow(message);
  });
});
