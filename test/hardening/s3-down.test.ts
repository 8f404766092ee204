import path from 'node:path';
import request from 'supertest';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3';
import { storedCounts } from '../helpers/faults';
import { makeImage } from '../helpers/images';
import {
  loggedInAgent,
  startTestStack,
  uploadFile,
  uploadFixture,
  type TestStack,
} from '../helpers/stack';

// A stopped S3 server is a real fault: the embedded server closes its port, and s3gate's
// connections to it are refused until a new server listens on the same port.
describe.each(['redirect', 'proxy'] as const)('S3 stopped in %s mode', (mode) => {
  let stack: TestStack;
  let admin: Awaited<ReturnType<typeof loggedInAgent>>;
  let imageId: string;
  let restarted: EmbeddedS3 | undefined;

  beforeAll(async () => {
    stack = await startTestStack({ DELIVERY_MODE: mode });
    admin = await loggedInAgent(stack.url);
    ({ id: imageId } = await uploadFixture(admin));
    await stack.runtime.embeddedS3?.close();
  });

  afterAll(async () => {
    await restarted?.close();
    await stack.stop();
  });

  if (mode === 'redirect') {
    it('still answers image redirects with 302', async () => {
      const response = await admin.get(`/image/${imageId}`).redirects(0);

      expect(response.status).toBe(302);
      expect(response.headers.location).toContain(`/${stack.runtime.config.s3.bucket}/images/`);
    });
  }

  if (mode === 'proxy') {
    it('answers image reads with 503, Retry-After and a message', async () => {
      const response = await admin.get(`/image/${imageId}`).set('Accept', 'image/*');

      expect(response.status).toBe(503);
      expect(response.headers['retry-after']).toBe('5');
      expect(response.headers['cache-control']).toBe('no-store');
      expect(response.text).toBe('Image storage is unavailable. Try again shortly.\n');
    });

    it('answers HEAD with 503 and Retry-After', async () => {
      const response = await admin.head(`/image/${imageId}`);

      expect(response.status).toBe(503);
      expect(response.headers['retry-after']).toBe('5');
    });
  }

  it('answers a script upload with 503, Retry-After and a message, storing nothing', async () => {
    const before = await storedCounts(stack);
    const response = await uploadFile(admin, await makeImage('png'), 'x.png', 'image/png');

    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBe('5');
    expect(response.body).toEqual({
      error: {
        status: 503,
        code: 'STORAGE_UNAVAILABLE',
        message: 'Image storage is unavailable. Try again shortly.',
      },
    });
    expect(await storedCounts(stack)).toEqual(before);
  });

  it('answers a form upload with a 503 page that explains it', async () => {
    const page = await admin.get('/admin/upload');
    const token = /name="_csrf" value="([^"]+)"/.exec(page.text)?.[1] ?? '';
    const response = await admin
      .post('/admin/images')
      .set('Accept', 'text/html')
      .field('_csrf', token)
      .attach('images', await makeImage('png'), 'x.png');

    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBe('5');
    expect(response.text).toContain('Image storage is unavailable. Try again shortly.');
  });

  it('fails /readyz with 503 naming storage', async () => {
    const response = await request(stack.url).get('/readyz');

    expect(response.status).toBe(503);
    expect(response.body).toEqual({
      status: 'unavailable',
      database: 'ok',
      storage: 'unavailable',
    });
  });

  it('keeps serving pages and /healthz', async () => {
    expect((await admin.get('/')).status).toBe(200);
    expect((await admin.get('/admin/upload')).status).toBe(200);
    expect((await request(stack.url).get('/login')).status).toBe(200);
    expect((await request(stack.url).get('/healthz')).status).toBe(200);
  });

  it('recovers without a restart once S3 listens on the same port again', async () => {
    const embedded = stack.runtime.embeddedS3;
    if (!embedded) throw new Error('the test stack has no embedded S3 server');
    restarted = await startEmbeddedS3({
      directory: path.join(stack.dataDir, 's3'),
      bucket: stack.runtime.config.s3.bucket,
      port: embedded.port,
    });

    expect((await request(stack.url).get('/readyz')).status).toBe(200);
    const { id, bytes } = await uploadFixture(admin);
    const read = await admin.get(`/image/${id}`).redirects(0).buffer(true);
    if (mode === 'redirect') {
      expect(read.status).toBe(302);
      const object = await fetch(read.headers.location ?? '');
      expect(Buffer.from(await object.arrayBuffer()).equals(bytes)).toBe(true);
    } else {
      expect(read.status).toBe(200);
      expect(Buffer.from(read.body as Buffer).equals(bytes)).toBe(true);
    }
    // The image stored before the outage is readable again as well.
    const old = await admin.get(`/image/${imageId}`).redirects(0);
    expect(old.status).toBe(mode === 'redirect' ? 302 : 200);
  });
});
