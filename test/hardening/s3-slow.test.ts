import path from 'node:path';
import request from 'supertest';
import {
  EMBEDDED_S3_CREDENTIALS,
  startEmbeddedS3,
  type EmbeddedS3,
} from '../../src/storage/embedded-s3';
import { TcpRelay, storedCounts, waitFor } from '../helpers/faults';
import { makeImage } from '../helpers/images';
import {
  loggedInAgent,
  makeDataDir,
  startTestStack,
  uploadFile,
  uploadFixture,
  type TestStack,
} from '../helpers/stack';

const REQUEST_TIMEOUT_MS = 600;
const MAX_SOCKETS = 2;
const BUCKET = 's3gate-images';

// The embedded S3 server cannot be made to hang on demand, so s3gate reaches it through a relay
// on loopback. In silent mode the relay accepts connections and never sends a byte, as an
// overloaded or wedged S3 endpoint would. In forward mode it passes them to the real server.
let s3: EmbeddedS3;
let relay: TcpRelay;
let stack: TestStack;
let admin: Awaited<ReturnType<typeof loggedInAgent>>;
let imageId: string;

beforeAll(async () => {
  const dataDir = makeDataDir();
  s3 = await startEmbeddedS3({ directory: path.join(dataDir, 's3'), bucket: BUCKET, port: 0 });
  relay = new TcpRelay('127.0.0.1', s3.port);
  await relay.listen();
  stack = await startTestStack(
    {
      DATA_DIR: dataDir,
      DELIVERY_MODE: 'proxy',
      S3_BUCKET: BUCKET,
      S3_ENDPOINT: `http://127.0.0.1:${relay.port}`,
      S3_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      S3_MAX_SOCKETS: String(MAX_SOCKETS),
    },
    { s3Credentials: EMBEDDED_S3_CREDENTIALS },
  );
  admin = await loggedInAgent(stack.url);
  ({ id: imageId } = await uploadFixture(admin));
});

afterAll(async () => {
  await stack.stop();
  await relay.close();
  await s3.close();
});

afterEach(async () => {
  relay.dropSilentConnections();
  await relay.setMode('forward');
});

/** Time a request, in milliseconds. */
async function timed<T>(send: () => Promise<T>): Promise<{ result: T; elapsedMs: number }> {
  const started = performance.now();
  const result = await send();
  return { result, elapsedMs: performance.now() - started };
}

describe('S3 that accepts connections and never answers', () => {
  it('gives a proxy read 504 within the request timeout', async () => {
    await relay.setMode('silent');
    const { result, elapsedMs } = await timed(() =>
      admin.get(`/image/${imageId}`).set('Accept', 'image/*'),
    );

    expect(result.status).toBe(504);
    expect(result.text).toBe('Image storage did not respond in time. Try again shortly.\n');
    expect(result.headers['cache-control']).toBe('no-store');
    expect(elapsedMs).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 50);
    expect(elapsedMs).toBeLessThan(REQUEST_TIMEOUT_MS + 500);
  });

  it('gives an upload 504 within the request timeout and stores nothing', async () => {
    const image = await makeImage('png');
    const before = await storedCounts(stack);
    await relay.setMode('silent');
    const { result, elapsedMs } = await timed(() =>
      uploadFile(admin, image, 'slow.png', 'image/png'),
    );

    expect(result.status).toBe(504);
    expect((result.body as { error: { code: string } }).error.code).toBe('STORAGE_TIMEOUT');
    expect(elapsedMs).toBeLessThan(REQUEST_TIMEOUT_MS + 1000);
    await relay.setMode('forward');
    expect(await storedCounts(stack)).toEqual(before);
  });

  it('fails /readyz with 503 within the request timeout', async () => {
    await relay.setMode('silent');
    const { result, elapsedMs } = await timed(() => request(stack.url).get('/readyz'));

    expect(result.status).toBe(503);
    expect((result.body as { storage: string }).storage).toBe('unavailable');
    expect(elapsedMs).toBeLessThan(REQUEST_TIMEOUT_MS + 500);
  });

  it('frees every pooled socket once the hung requests time out', async () => {
    const hungRequests = MAX_SOCKETS * 3;
    await relay.setMode('silent');
    const pending = Array.from({ length: hungRequests }, () =>
      admin
        .get(`/image/${imageId}`)
        .set('Accept', 'image/*')
        .then((r) => r.status),
    );

    // The pool is full: s3gate has exactly MAX_SOCKETS connections open to the hung server, and
    // the other reads wait for one of them.
    expect(await waitFor(() => relay.silentSockets.size === MAX_SOCKETS, 2000)).toBe(true);
    const statuses = await Promise.all(pending);
    expect(statuses).toEqual(Array.from({ length: hungRequests }, () => 504));

    // The hung server keeps every connection open; only s3gate can close them. If it kept any
    // of them in its pool, the next read would wait for a socket and time out too.
    expect(await waitFor(() => relay.silentSockets.size === 0, 2000)).toBe(true);
    await relay.setMode('forward');
    const { result, elapsedMs } = await timed(() =>
      admin.get(`/image/${imageId}`).set('Accept', 'image/*'),
    );
    expect(result.status).toBe(200);
    expect(elapsedMs).toBeLessThan(REQUEST_TIMEOUT_MS);
  });
});
