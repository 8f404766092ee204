import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import request from 'supertest';
import { newImageId } from '../../src/images/image-id';
import type { ImageRecord } from '../../src/images/image-repository';
import { createS3Client } from '../../src/storage/s3-client';
import {
  asBytes,
  BUCKET,
  bodyOf,
  createImageStore,
  createProxyApp,
  startEmbeddedS3Fixture,
  TEST_CLIENT_SETTINGS,
  type EmbeddedS3Fixture,
} from './proxy-fixture';

/** Build a metadata row for a key that no request in this file can reach. */
function unreachableImage(): ImageRecord {
  const id = newImageId();
  return {
    id,
    key: `images/${id}`,
    contentType: 'image/png',
    sizeBytes: 100,
    etag: '"0123456789abcdef0123456789abcdef"',
    originalName: 'photo.png',
    width: null,
    height: null,
    uploadedBy: null,
    createdAt: new Date(Date.now() - 60_000),
    hasCacheMetadata: true,
  };
}

/** Find a loopback port with nothing listening: bind port 0, note the port, close it again. */
async function closedLoopbackPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

describe('S3 refuses connections', () => {
  // A stopped S3 server is a real fault: nothing listens on the port.
  it('GET returns 503 with Retry-After', async () => {
    const port = await closedLoopbackPort();
    const client = createS3Client({
      ...TEST_CLIENT_SETTINGS,
      endpoint: `http://127.0.0.1:${port}`,
    });
    const image = unreachableImage();
    const app = createProxyApp(client, new Map([[image.id, image]]));

    const first = await request(app).get(`/image/${image.id}`);
    const second = await request(app).head(`/image/${image.id}`);
    client.destroy();

    expect(first.status).toBe(503);
    expect(first.headers['retry-after']).toBe('5');
    expect(first.headers['cache-control']).toBeUndefined();
    expect(second.status).toBe(503);
  });
});

describe('S3 accepts and never responds', () => {
  // The embedded S3 server cannot be made to hang on demand, so a bare TCP server on loopback
  // accepts the connection and stays silent.
  let silentServer: net.Server;
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    silentServer = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silentServer.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silentServer.close(resolve));
  });

  it('GET returns 504 after the request timeout', async () => {
    const { port } = silentServer.address() as AddressInfo;
    const client = createS3Client({
      ...TEST_CLIENT_SETTINGS,
      endpoint: `http://127.0.0.1:${port}`,
      connectTimeoutMs: 1000,
      requestTimeoutMs: 300,
      maxSockets: 4,
    });
    const image = unreachableImage();
    const app = createProxyApp(client, new Map([[image.id, image]]));

    const res = await request(app).get(`/image/${image.id}`);
    client.destroy();

    expect(res.status).toBe(504);
    expect(res.headers['cache-control']).toBeUndefined();
  });
});

describe('client leaves while S3 is silent', () => {
  // Same stub as above: only a silent server keeps the S3 read pending long enough to leave.
  it('cancels the S3 read and frees its socket', async () => {
    const silentSockets = new Set<Socket>();
    const silentServer = net.createServer((socket) => {
      silentSockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silentServer.listen(0, '127.0.0.1', resolve));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    // No request timeout, so only the cancellation can end the S3 read.
    const client = new S3Client({
      ...TEST_CLIENT_SETTINGS,
      endpoint: `http://127.0.0.1:${(silentServer.address() as AddressInfo).port}`,
      requestHandler: new NodeHttpHandler({ httpAgent: agent, requestTimeout: 0 }),
    });
    const image = unreachableImage();
    const app = http.createServer(createProxyApp(client, new Map([[image.id, image]])));
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));

    const s3Reached = new Promise((resolve) => silentServer.once('connection', resolve));
    const { port } = app.address() as AddressInfo;
    const clientRequest = http.get(`http://127.0.0.1:${port}/image/${image.id}`, { agent: false });
    clientRequest.on('error', () => undefined);
    await s3Reached;
    const inUseWhileWaiting = socketsInUse(agent);
    clientRequest.destroy();
    for (let attempt = 0; attempt < 100 && socketsInUse(agent) > 0; attempt++) await delay(20);
    const inUseAfterLeaving = socketsInUse(agent);

    app.closeAllConnections();
    await new Promise((resolve) => app.close(resolve));
    client.destroy();
    for (const socket of silentSockets) socket.destroy();
    await new Promise((resolve) => silentServer.close(resolve));

    expect(inUseWhileWaiting).toBe(1);
    expect(inUseAfterLeaving).toBe(0);
  });
});

function socketsInUse(agent: http.Agent): number {
  return Object.values(agent.sockets).reduce((count, list) => count + (list?.length ?? 0), 0);
}

describe('S3 rejects the signature', () => {
  // A real fault of the embedded server: it checks SigV4 and rejects a wrong secret with 403.
  it('GET returns 502, not 404', async () => {
    const fixture = await startEmbeddedS3Fixture();
    const image = await createImageStore(fixture.client).storeImage(Buffer.alloc(100, 1));
    const wrongClient = createS3Client({
      ...TEST_CLIENT_SETTINGS,
      endpoint: fixture.s3.endpoint,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'not-the-secret' },
    });
    const app = createProxyApp(wrongClient, new Map([[image.id, image]]));

    const res = await request(app).get(`/image/${image.id}`);
    wrongClient.destroy();
    await fixture.close();

    expect(res.status).toBe(502);
  });
});

describe('S3 read retries', () => {
  // The recording relay in front of the embedded S3 server replies to reads with the queued faults,
  // because the real server cannot throttle or drop a connection on demand.
  let fixture: EmbeddedS3Fixture;
  let image: ImageRecord;
  let bytes: Buffer;
  let app: ReturnType<typeof createProxyApp>;

  beforeAll(async () => {
    fixture = await startEmbeddedS3Fixture({ recordRequests: true });
    bytes = randomBytes(20_000);
    image = await createImageStore(fixture.client).storeImage(bytes);
    app = createProxyApp(fixture.client, new Map([[image.id, image]]));
  });

  afterAll(async () => {
    await fixture.close();
  });

  beforeEach(() => {
    fixture.readFaults.length = 0;
  });

  /** Methods of the reads of the test image that reached the relay since `since`. */
  function readMethods(since: number): string[] {
    return fixture.requests
      .slice(since)
      .filter((r) => r.path === `/${BUCKET}/${image.key}`)
      .map((r) => r.method);
  }

  it('SlowDown once returns 200 after a retry', async () => {
    const since = fixture.requests.length;
    fixture.readFaults.push({ status: 503, code: 'SlowDown' });
    const res = await asBytes(request(app).get(`/image/${image.id}`));

    expect(res.status).toBe(200);
    expect(bodyOf(res).equals(bytes)).toBe(true);
    expect(readMethods(since)).toEqual(['GET', 'GET']);
  });

  it('reset connection returns 200 after a retry', async () => {
    const since = fixture.requests.length;
    fixture.readFaults.push('reset');
    const res = await asBytes(request(app).get(`/image/${image.id}`));

    expect(res.status).toBe(200);
    expect(bodyOf(res).equals(bytes)).toBe(true);
    expect(readMethods(since)).toEqual(['GET', 'GET']);
  });

  it('HEAD after InternalError returns 200', async () => {
    const since = fixture.requests.length;
    fixture.readFaults.push({ status: 500, code: 'InternalError' });
    const res = await request(app).head(`/image/${image.id}`);

    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe(String(bytes.length));
    expect(readMethods(since)).toEqual(['HEAD', 'HEAD']);
  });

  it('SlowDown on every attempt returns 503', async () => {
    const since = fixture.requests.length;
    for (let i = 0; i < 3; i++) fixture.readFaults.push({ status: 503, code: 'SlowDown' });
    const res = await request(app).get(`/image/${image.id}`);

    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(readMethods(since)).toEqual(['GET', 'GET', 'GET']);
  });

  it('InternalError on every attempt returns 502', async () => {
    const since = fixture.requests.length;
    for (let i = 0; i < 3; i++) fixture.readFaults.push({ status: 500, code: 'InternalError' });
    const res = await request(app).get(`/image/${image.id}`);

    expect(res.status).toBe(502);
    expect(readMethods(since)).toEqual(['GET', 'GET', 'GET']);
  });

  it('AccessDenied is not retried and returns 404', async () => {
    // S3 sends 403 AccessDenied for a missing key when the app may not list the bucket.
    const since = fixture.requests.length;
    fixture.readFaults.push({ status: 403, code: 'AccessDenied' });
    const res = await request(app).get(`/image/${image.id}`);

    expect(res.status).toBe(404);
    expect(readMethods(since)).toEqual(['GET']);
  });
});

describe('row larger than its object', () => {
  // The range is valid for the size in the row, so only S3 can see that it starts past the end.
  it('GET returns 416 with the size S3 reports', async () => {
    const fixture = await startEmbeddedS3Fixture();
    const image = await createImageStore(fixture.client).storeImage(randomBytes(1000), {
      sizeBytes: 5000,
    });
    const app = createProxyApp(fixture.client, new Map([[image.id, image]]));

    const res = await request(app).get(`/image/${image.id}`).set('Range', 'bytes=2000-2999');
    await fixture.close();

    expect(res.status).toBe(416);
    expect(res.headers['content-range']).toBe('bytes */1000');
    expect(res.headers['cache-control']).toBeUndefined();
  });
});

describe('S3 client with a fetch handler', () => {
  // A handler built on fetch, as @smithy/fetch-http-handler is, returns web streams. This one
  // sends real requests to the embedded S3 server.
  it('GET streams the web body', async () => {
    const fixture = await startEmbeddedS3Fixture();
    const bytes = randomBytes(70_000);
    const image = await createImageStore(fixture.client).storeImage(bytes);
    const fetchClient = createS3Client({ ...TEST_CLIENT_SETTINGS, endpoint: fixture.s3.endpoint });
    fetchClient.config.requestHandler = {
      async handle(request: { hostname: string; port?: number; method: string; path: string }) {
        const res = await fetch(`http://${request.hostname}:${request.port}${request.path}`, {
          method: request.method,
        });
        const headers = Object.fromEntries(res.headers.entries());
        return { response: { statusCode: res.status, headers, body: res.body } };
      },
    };
    const app = createProxyApp(fetchClient, new Map([[image.id, image]]));

    const get = await asBytes(request(app).get(`/image/${image.id}`));
    const head = await request(app).head(`/image/${image.id}`);
    fetchClient.destroy();
    await fixture.close();

    expect(get.status).toBe(200);
    expect(bodyOf(get).equals(bytes)).toBe(true);
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(bytes.length));
  });
});

describe('app clock behind S3', () => {
  // The client's clock offset makes the app sign as if its clock ran 700 s slow, past the
  // 600 s lifetime of the reader's URLs. S3's Date header then corrects it.
  it('GET corrects the offset and returns 200', async () => {
    const fixture = await startEmbeddedS3Fixture({ recordRequests: true });
    const bytes = randomBytes(5000);
    const image = await createImageStore(fixture.client).storeImage(bytes);
    const app = createProxyApp(fixture.client, new Map([[image.id, image]]));
    fixture.client.config.systemClockOffset = -700_000;
    const since = fixture.requests.length;

    const res = await asBytes(request(app).get(`/image/${image.id}`));
    const offsetAfter = fixture.client.config.systemClockOffset;
    const reads = fixture.requests.slice(since).map((r) => r.method);
    await fixture.close();

    expect(res.status).toBe(200);
    expect(bodyOf(res).equals(bytes)).toBe(true);
    expect(reads).toEqual(['GET', 'GET']);
    expect(Math.abs(offsetAfter)).toBeLessThan(60_000);
  });

  it('HEAD corrects the clock offset', async () => {
    // S3's 403 to a HEAD has no body, so only its Date header shows the clock error.
    const fixture = await startEmbeddedS3Fixture({ recordRequests: true });
    const bytes = randomBytes(4000);
    const image = await createImageStore(fixture.client).storeImage(bytes);
    const warnings: object[] = [];
    const logger = { warn: (details: object) => warnings.push(details), error: () => undefined };
    const app = createProxyApp(fixture.client, new Map([[image.id, image]]), logger);
    fixture.client.config.systemClockOffset = -700_000;
    const since = fixture.requests.length;

    const res = await request(app).head(`/image/${image.id}`);
    const offsetAfter = fixture.client.config.systemClockOffset;
    const reads = fixture.requests.slice(since).map((r) => r.method);
    await fixture.close();

    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe(String(bytes.length));
    expect(reads).toEqual(['HEAD', 'HEAD']);
    expect(Math.abs(offsetAfter)).toBeLessThan(60_000);
    expect(warnings).toEqual([expect.objectContaining({ event: 's3_clock_offset_corrected' })]);
  });

  it('expired URL without Date returns 502', async () => {
    // With no Date header the offset cannot be corrected. The expired 403 must not pass for a
    // missing object, whose 404 and log would tell the operator to delete the row.
    const fixture = await startEmbeddedS3Fixture({ recordRequests: true });
    const image = await createImageStore(fixture.client).storeImage(randomBytes(100));
    const warnings: object[] = [];
    const logger = { warn: (details: object) => warnings.push(details), error: () => undefined };
    const app = createProxyApp(fixture.client, new Map([[image.id, image]]), logger);
    fixture.readFaults.push({ status: 403, code: 'AccessDenied', message: 'Request has expired' });

    const res = await request(app).get(`/image/${image.id}`);
    await fixture.close();

    expect(res.status).toBe(502);
    expect(warnings).toEqual([]);
  });
});

describe('key with a dot segment', () => {
  // URL parsers drop "." segments, and S3 would then check the signature against another path.
  it('GET returns the object', async () => {
    const fixture = await startEmbeddedS3Fixture({ recordRequests: true });
    const bytes = randomBytes(3000);
    const key = `images/./dot-${randomBytes(4).toString('hex')}`;
    const image = await createImageStore(fixture.client).storeImage(bytes, { key });
    const app = createProxyApp(fixture.client, new Map([[image.id, image]]));
    const since = fixture.requests.length;

    const res = await asBytes(request(app).get(`/image/${image.id}`));
    const paths = fixture.requests.slice(since).map((r) => r.path);
    await fixture.close();

    expect(res.status).toBe(200);
    expect(bodyOf(res).equals(bytes)).toBe(true);
    expect(paths).toEqual([`/${BUCKET}/${key}`]);
  });
});

describe('S3 stalls mid-body', () => {
  // The embedded S3 server cannot stall on demand, so a loopback HTTP server sends the headers
  // and the first 100 of 1,000 bytes, then goes silent.
  it('cuts the response after the timeout', async () => {
    // Without an idle timeout on the body, this test waits until Jest's timeout fails it.
    const stalled = new Set<http.ServerResponse>();
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': '1000', etag: '"stall"' });
      res.write(Buffer.alloc(100, 7));
      stalled.add(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = createS3Client({
      ...TEST_CLIENT_SETTINGS,
      endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      requestTimeoutMs: 300,
      maxSockets: 2,
    });
    const image = { ...unreachableImage(), sizeBytes: 1000 };
    const app = http.createServer(createProxyApp(client, new Map([[image.id, image]])));
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    const { port } = app.address() as AddressInfo;

    const received = await new Promise<{ status: number; bytes: number; complete: boolean }>(
      (resolve) => {
        http.get(`http://127.0.0.1:${port}/image/${image.id}`, { agent: false }, (res) => {
          let bytes = 0;
          res.on('data', (chunk: Buffer) => (bytes += chunk.length));
          res.on('close', () => {
            resolve({ status: res.statusCode ?? 0, bytes, complete: res.complete });
          });
        });
      },
    );

    app.closeAllConnections();
    await new Promise((resolve) => app.close(resolve));
    client.destroy();
    for (const res of stalled) res.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));

    expect(received.status).toBe(200);
    expect(received.bytes).toBe(100);
    expect(received.complete).toBe(false);
  });
});
