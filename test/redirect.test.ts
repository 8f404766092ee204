import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { parse as parseContentDisposition } from 'content-disposition';
import { ImageRepository } from '../src/images/image-repository';
import { newImageId } from '../src/images/image-id';
import { REDIRECT_CACHE_CONTROL } from '../src/images/image-router';
import { EMBEDDED_S3_CREDENTIALS } from '../src/storage/embedded-s3';
import { createUrlSigner } from '../src/storage/url-signer';
import { makeImage } from './helpers/images';
import {
  fetchPlain,
  loggedInAgent,
  startTestStack,
  uploadFixture,
  uploadFile,
  type TestStack,
} from './helpers/stack';

let stack: TestStack;
let agent: Awaited<ReturnType<typeof loggedInAgent>>;

beforeAll(async () => {
  stack = await startTestStack();
  agent = await loggedInAgent(stack.url);
});

afterAll(async () => {
  await stack.stop();
});

/** Store an object straight in the bucket, plus its metadata row, bypassing the upload route. */
async function putDirectly(key: string, body: Buffer, withCacheMetadata: boolean): Promise<string> {
  const { runtime } = stack;
  await runtime.s3Client.send(
    new PutObjectCommand({
      Bucket: runtime.config.s3.bucket,
      Key: key,
      Body: body,
      ContentType: 'image/png',
      ...(withCacheMetadata ? { CacheControl: 'private, max-age=60, immutable' } : {}),
    }),
  );
  const id = newImageId();
  await new ImageRepository(runtime.database.db).insert({
    id,
    key,
    contentType: 'image/png',
    sizeBytes: body.length,
    etag: null,
    originalName: 'direct.png',
    width: null,
    height: null,
    uploadedBy: null,
    hasCacheMetadata: withCacheMetadata,
  });
  return id;
}

function locationOf(response: { headers: Record<string, string> }): string {
  const location = response.headers.location;
  if (!location) throw new Error('response has no Location');
  return location;
}

describe('GET /image/:id in redirect mode', () => {
  it('answers 302 with exactly the no-store headers', async () => {
    const { id } = await uploadFixture(agent);
    const response = await agent.get(`/image/${id}`).redirects(0);

    expect(response.status).toBe(302);
    expect(response.headers['cache-control']).toBe(REDIRECT_CACHE_CONTROL);
    expect(response.headers.pragma).toBe('no-cache');
    expect(response.headers.expires).toBe('0');
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect(response.headers['content-length']).toBe('0');
    expect(locationOf(response)).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/s3gate-images\/images\//);
  });

  it('points to the uploaded bytes with their stored caching headers', async () => {
    const { id, bytes } = await uploadFixture(agent);
    const response = await agent.get(`/image/${id}`).redirects(0);
    const object = await fetchPlain(locationOf(response));

    expect(object.status).toBe(200);
    expect(object.body.equals(bytes)).toBe(true);
    expect(object.headers.get('content-type')).toBe('image/png');
    expect(object.headers.get('cache-control')).toBe('private, max-age=31536000, immutable');
    const expires = Date.parse(object.headers.get('expires') ?? '');
    expect(expires).toBeGreaterThan(Date.now() + 364 * 24 * 3600 * 1000);
  });

  it('gives 403 from S3 for a tampered signature', async () => {
    const { id } = await uploadFixture(agent);
    const url = new URL(locationOf(await agent.get(`/image/${id}`).redirects(0)));
    const signature = url.searchParams.get('X-Amz-Signature') ?? '';
    const flipped = (signature.startsWith('0') ? '1' : '0') + signature.slice(1);
    url.searchParams.set('X-Amz-Signature', flipped);

    expect((await fetchPlain(url.toString())).status).toBe(403);
  });

  it('gives 403 from S3 for a URL whose lifetime has passed', async () => {
    const { id } = await uploadFixture(agent);
    const image = await new ImageRepository(stack.runtime.database.db).findById(id);
    // A signer whose clock is two hours behind: its URLs expired an hour ago.
    const pastSigner = createUrlSigner({
      client: stack.runtime.s3Client,
      bucket: stack.runtime.config.s3.bucket,
      windowSeconds: 600,
      minValiditySeconds: 60,
      now: () => Date.now() - 2 * 3600 * 1000,
    });
    const expiredUrl = await pastSigner.sign({ key: image?.key ?? '' });

    expect((await fetchPlain(expiredUrl)).status).toBe(403);
  });

  it('sends HEAD to a URL signed for HEAD', async () => {
    const { id, bytes } = await uploadFixture(agent);
    const response = await agent.head(`/image/${id}`).redirects(0);
    const location = locationOf(response);
    const head = await fetch(location, { method: 'HEAD' });

    expect(response.status).toBe(302);
    expect(response.headers['cache-control']).toBe(REDIRECT_CACHE_CONTROL);
    expect(response.headers['content-length']).toBe('0');
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(bytes.length));
  });

  it('lists GET and HEAD for OPTIONS', async () => {
    const { id } = await uploadFixture(agent);
    const response = await agent.options(`/image/${id}`);

    expect(response.status).toBe(200);
    expect(response.headers.allow).toBe('GET, HEAD');
    expect(response.headers['cache-control']).toBe('no-store');
  });
});

describe('C01 keys with awkward characters', () => {
  const keys = [
    'images/with space.png',
    'images/plus+sign.png',
    'images/equals=sign.png',
    'images/percent%25literal%.png',
    'images/colon:name.png',
    'images/Ärger ünïcødé 写真.png',
  ];

  it.each(keys)('serves %s with the exact bytes', async (key) => {
    const bytes = await makeImage('png', 5, 5, '#123456');
    const id = await putDirectly(key, bytes, true);
    const location = locationOf(await agent.get(`/image/${id}`).redirects(0));
    const object = await fetchPlain(location);

    expect(object.status).toBe(200);
    expect(object.body.equals(bytes)).toBe(true);
  });

  it('escapes each character once in the path', async () => {
    const id = await putDirectly('images/a b+c=d%e.png', await makeImage('png'), true);
    const path = new URL(locationOf(await agent.get(`/image/${id}`).redirects(0))).pathname;

    expect(path).toContain('a%20b%2Bc%3Dd%25e.png');
    expect(path).not.toContain('+');
    expect(path).not.toContain('%25' + '20');
    expect(path).not.toMatch(/%25[0-9A-F]{2}/);
  });
});

describe('C02 signed headers', () => {
  it('signs only host and works without extra headers', async () => {
    const { id, bytes } = await uploadFixture(agent);
    const url = new URL(locationOf(await agent.get(`/image/${id}`).redirects(0)));

    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('host');
    expect(url.searchParams.has('x-amz-checksum-mode')).toBe(false);
    expect([...url.searchParams.keys()].filter((k) => /checksum|security-token/i.test(k))).toEqual(
      [],
    );
    const object = await fetchPlain(url.toString());
    expect(object.status).toBe(200);
    expect(object.body.equals(bytes)).toBe(true);
  });
});

describe('C04 stable URLs', () => {
  it('returns the byte-identical Location one second later', async () => {
    const { id } = await uploadFixture(agent);
    const { signer } = stack.runtime;
    let first: string;
    let second: string;
    // A window boundary between the two requests rightly changes the URL; then try once more.
    for (;;) {
      const windowBefore = signer.windowStart();
      first = locationOf(await agent.get(`/image/${id}`).redirects(0));
      await new Promise((resolve) => setTimeout(resolve, 1000));
      second = locationOf(await agent.get(`/image/${id}`).redirects(0));
      if (signer.windowStart() === windowBefore) break;
    }

    expect(second).toBe(first);
  });

  it('returns the same Location from a second instance', async () => {
    const { id } = await uploadFixture(agent);
    const first = locationOf(await agent.get(`/image/${id}`).redirects(0));
    const endpoint = stack.runtime.embeddedS3?.endpoint ?? '';
    // Instance B shares the data directory (SQLite, session secret) and signs for A's S3 server.
    const other = await startTestStack(
      { DATA_DIR: stack.dataDir, S3_BUCKET: 's3gate-images', S3_ENDPOINT: endpoint },
      { s3Credentials: EMBEDDED_S3_CREDENTIALS },
    );
    try {
      const cookie = (await agent.get('/').redirects(0)).request.cookies;
      const fromOther = await fetch(`${other.url}/image/${id}`, {
        headers: { cookie },
        redirect: 'manual',
      });

      expect(fromOther.status).toBe(302);
      expect(fromOther.headers.get('location')).toBe(first);
    } finally {
      await other.stop();
    }
  });

  it('changes the URL in the next window', async () => {
    let now = Date.UTC(2026, 0, 1, 10, 0, 5);
    const signer = createUrlSigner({
      client: stack.runtime.s3Client,
      bucket: 'b',
      windowSeconds: 3600,
      minValiditySeconds: 600,
      now: () => now,
    });
    const a = await signer.sign({ key: 'images/x.png' });
    now += 3500 * 1000;
    const b = await signer.sign({ key: 'images/x.png' });
    now += 200 * 1000;
    const c = await signer.sign({ key: 'images/x.png' });

    expect(b).toBe(a);
    expect(c).not.toBe(a);
    expect(new URL(a).searchParams.get('X-Amz-Date')).toBe('20260101T100000Z');
    expect(new URL(a).searchParams.get('X-Amz-Expires')).toBe('4200');
    expect(signer.stats).toEqual({ hits: 1, misses: 2, clamped: 0 });
  });
});

describe('C05 objects stored without caching metadata', () => {
  it('adds response-cache-control and response-expires', async () => {
    const bytes = await makeImage('png');
    const id = await putDirectly(`images/${newImageId()}.png`, bytes, false);
    const location = new URL(locationOf(await agent.get(`/image/${id}`).redirects(0)));

    expect(location.searchParams.get('response-cache-control')).toBe(
      'private, max-age=31536000, immutable',
    );
    expect(location.searchParams.get('response-expires')).toMatch(/GMT$/);
    const object = await fetchPlain(location.toString());
    expect(object.status).toBe(200);
    expect(object.headers.get('cache-control')).toBe('private, max-age=31536000, immutable');
    expect(Date.parse(object.headers.get('expires') ?? '')).toBeGreaterThan(Date.now());
  });

  it('adds no overrides to objects uploaded by s3gate', async () => {
    const { id } = await uploadFixture(agent);
    const location = new URL(locationOf(await agent.get(`/image/${id}`).redirects(0)));

    expect(location.searchParams.has('response-cache-control')).toBe(false);
    expect(location.searchParams.has('response-expires')).toBe(false);
  });
});

describe('C06 download names', () => {
  const name = '写真 1.png';

  it('stores an ASCII fallback and filename* on upload', async () => {
    const { id } = await uploadFixture(agent, await makeImage('png'), name);
    const image = await new ImageRepository(stack.runtime.database.db).findById(id);
    const head = await stack.runtime.s3Client.send(
      new HeadObjectCommand({ Bucket: stack.runtime.config.s3.bucket, Key: image?.key ?? '' }),
    );
    const header = head.ContentDisposition ?? '';

    expect(image?.originalName).toBe(name);
    expect(header).toMatch(/^inline; filename="[\x20-\x7e]+"; filename\*=UTF-8''/);
    expect(header).toMatch(/^[\x20-\x7e]+$/);
    expect(parseContentDisposition(header).parameters.filename).toBe(name);
  });

  describe('with an external S3 endpoint', () => {
    // Against a store other than the embedded one, ?download is a 302 to a URL signed with a
    // response-content-disposition. The embedded server is that store here, reached as external.
    let external: TestStack;
    let externalAgent: Awaited<ReturnType<typeof loggedInAgent>>;

    beforeAll(async () => {
      external = await startTestStack(
        { S3_BUCKET: 's3gate-images', S3_ENDPOINT: stack.runtime.embeddedS3?.endpoint ?? '' },
        { s3Credentials: EMBEDDED_S3_CREDENTIALS },
      );
      externalAgent = await loggedInAgent(external.url);
    });

    afterAll(async () => {
      await external.stop();
    });

    it('signs an attachment disposition for ?download', async () => {
      const { id } = await uploadFixture(externalAgent, await makeImage('png'), name);
      const location = new URL(
        locationOf(await externalAgent.get(`/image/${id}?download`).redirects(0)),
      );
      const disposition = location.searchParams.get('response-content-disposition') ?? '';

      expect(disposition).toMatch(/^attachment; filename="[\x20-\x7e]+"; filename\*=UTF-8''/);
      expect(disposition).toMatch(/^[\x20-\x7e]+$/);
      expect(parseContentDisposition(disposition).parameters.filename).toBe(name);
    });

    it('signs the download URL as the SDK does', async () => {
      // The emulator rejects this signature (it re-encodes the "'" in filename*=UTF-8''… unlike
      // AWS), so the URL is compared with the SDK's own signer instead of being fetched.
      const { id } = await uploadFixture(externalAgent, await makeImage('png'), name);
      const image = await new ImageRepository(external.runtime.database.db).findById(id);
      const location = locationOf(await externalAgent.get(`/image/${id}?download`).redirects(0));
      const signingDate = new Date(external.runtime.signer.windowStart() * 1000);
      const expected = await getSignedUrl(
        external.runtime.s3Client,
        new GetObjectCommand({
          Bucket: external.runtime.config.s3.bucket,
          Key: image?.key ?? '',
          ResponseContentDisposition:
            new URL(location).searchParams.get('response-content-disposition') ?? '',
        }),
        { signingDate, expiresIn: 3600 + 600 },
      );

      expect(location).toBe(expected);
    });
  });

  it('streams ?download through the app in embedded mode', async () => {
    const { id, bytes } = await uploadFixture(agent, await makeImage('png'), name);
    const response = await agent.get(`/image/${id}?download`).redirects(0).buffer(true);
    const header = response.headers['content-disposition'] ?? '';

    expect(response.status).toBe(200);
    expect(Buffer.from(response.body as Buffer).equals(bytes)).toBe(true);
    expect(header).toMatch(/^attachment; filename="[\x20-\x7e]+"; filename\*=UTF-8''/);
    expect(parseContentDisposition(header).parameters.filename).toBe(name);
  });

  it('names the file in a response header with ASCII only', async () => {
    const { id } = await uploadFixture(agent, await makeImage('png'), name);
    const location = locationOf(await agent.get(`/image/${id}`).redirects(0));
    const object = await fetchPlain(location);
    const header = object.headers.get('content-disposition') ?? '';

    expect(object.status).toBe(200);
    expect(header).toMatch(/^[\x20-\x7e]+$/);
    expect(parseContentDisposition(header).parameters.filename).toBe(name);
  });
});

describe('C19 malformed ids', () => {
  const ids = [
    '..%2F..%2Fsecret.png',
    '%2e%2e',
    'a%2Fb',
    '%00',
    '%20',
    'x'.repeat(300),
    'A'.repeat(21),
    'A'.repeat(23),
    'AAAAAAAAAAAAAAAAAAAA.A',
  ];

  it.each(ids)('answers 404 for %s, never 302', async (id) => {
    const response = await agent.get(`/image/${id}`).redirects(0);

    expect([400, 404]).toContain(response.status);
    expect(response.headers.location).toBeUndefined();
  });

  it('answers 404 for a well-formed unknown id', async () => {
    const response = await agent.get(`/image/${newImageId()}`).redirects(0);

    expect(response.status).toBe(404);
    expect(response.headers.location).toBeUndefined();
  });
});

describe('anonymous requests', () => {
  it('get 401 with no-store and no URL', async () => {
    const { id } = await uploadFixture(agent);
    const response = await fetch(`${stack.url}/image/${id}`, {
      redirect: 'manual',
      headers: { accept: 'image/*' },
    });

    expect(response.status).toBe(401);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('location')).toBeNull();
  });

  it('go to the login page from an HTML navigation', async () => {
    const { id } = await uploadFixture(agent);
    const response = await fetch(`${stack.url}/image/${id}`, {
      redirect: 'manual',
      headers: { accept: 'text/html' },
    });

    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe(
      `/login?next=${encodeURIComponent(`/image/${id}`)}`,
    );
  });
});

describe('uploaded object metadata', () => {
  it('keeps Content-Length and Content-Type on the object', async () => {
    const bytes = await makeImage('jpeg', 50, 40);
    const response = await uploadFile(agent, bytes, 'photo.jpg', 'text/plain');
    const id = (response.body as { images: { id: string }[] }).images[0]?.id ?? '';
    const image = await new ImageRepository(stack.runtime.database.db).findById(id);
    const head = await stack.runtime.s3Client.send(
      new HeadObjectCommand({ Bucket: stack.runtime.config.s3.bucket, Key: image?.key ?? '' }),
    );

    expect(response.status).toBe(201);
    expect(image).toMatchObject({
      contentType: 'image/jpeg',
      sizeBytes: bytes.length,
      width: 50,
      height: 40,
    });
    expect(head.ContentLength).toBe(bytes.length);
    expect(head.ContentType).toBe('image/jpeg');
    expect(head.CacheControl).toBe('private, max-age=31536000, immutable');
    expect(image?.key).toMatch(/^images\/[A-Za-z0-9_-]{22}\.jpg$/);
  });
});

describe('S3_PUBLIC_ENDPOINT', () => {
  it('signs URLs for the origin browsers use', async () => {
    const internal = stack.runtime.embeddedS3?.endpoint ?? '';
    // The same S3 server under another host name, as with MinIO behind a public name.
    const publicEndpoint = internal.replace('127.0.0.1', 'localhost');
    const other = await startTestStack(
      { S3_BUCKET: 's3gate-images', S3_ENDPOINT: internal, S3_PUBLIC_ENDPOINT: publicEndpoint },
      { s3Credentials: EMBEDDED_S3_CREDENTIALS },
    );
    try {
      const otherAgent = await loggedInAgent(other.url);
      const { id, bytes } = await uploadFixture(otherAgent);
      const response = await otherAgent.get(`/image/${id}`).redirects(0);
      const location = locationOf(response);
      const page = await otherAgent.get('/');

      expect(new URL(location).origin).toBe(publicEndpoint);
      expect((await fetchPlain(location)).body.equals(bytes)).toBe(true);
      expect(page.headers['content-security-policy']).toContain(
        `img-src 'self' data: ${publicEndpoint}`,
      );
    } finally {
      await other.stop();
    }
  });
});
