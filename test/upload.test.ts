import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { makeImage, makeLargePng } from './helpers/images';
import {
  csrfFrom,
  loggedInAgent,
  startTestStack,
  uploadFile,
  uploadFixture,
  type TestStack,
} from './helpers/stack';

const MB = 1024 * 1024;

let stack: TestStack;
let agent: Awaited<ReturnType<typeof loggedInAgent>>;

beforeAll(async () => {
  stack = await startTestStack({ IMAGE_MAX_BYTES: String(10 * MB) });
  agent = await loggedInAgent(stack.url);
});

afterAll(async () => {
  await stack.stop();
});

/**
 * Count the objects in the bucket from the emulator's files. ListObjects would be the natural
 * call, but @20minutes/s3rver 4.0.4 canonicalizes bucket-level paths with a trailing slash and
 * rejects the SDK's signature for them.
 */
function objectCount(): number {
  const bucketDir = path.join(stack.dataDir, 's3', stack.runtime.config.s3.bucket);
  const files = fs.readdirSync(bucketDir, { recursive: true }) as string[];
  return files.filter((f) => f.endsWith('._S3rver_object')).length;
}

async function rowCount(): Promise<number> {
  return (await stack.runtime.database.db.selectFrom('images').select('id').execute()).length;
}

/** Counts of objects and rows, to show that a rejected upload stored nothing. */
async function storedCounts(): Promise<{ objects: number; rows: number }> {
  return { objects: objectCount(), rows: await rowCount() };
}

/** Build a multipart body by hand, so a test controls every byte and header of the part. */
function multipart(csrf: string, filename: string, partType: string, content: Buffer) {
  const boundary = `----s3gate${Math.random().toString(16).slice(2)}`;
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="_csrf"\r\n\r\n${csrf}\r\n`),
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="images"; filename="${filename}"\r\n` +
        `Content-Type: ${partType}\r\n\r\n`,
    ),
    content,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}

describe('C12 size limit', () => {
  it('answers 413, stores nothing, and the next upload on the connection succeeds', async () => {
    const page = await agent.get('/admin/upload');
    const csrf = csrfFrom(page.text);
    const cookie = (await agent.get('/admin/upload')).request.cookies;
    const before = await storedCounts();
    const tmpBefore = fs.readdirSync(os.tmpdir()).length;

    // One keep-alive socket for both uploads, and the server counts the connections it sees.
    const socketAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let connections = 0;
    const countConnection = () => {
      connections += 1;
    };
    stack.runtime.server.on('connection', countConnection);
    const post = (content: Buffer, accept: string) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const { body, contentType } = multipart(csrf, 'photo.png', 'image/png', content);
        const req = http.request(
          `${stack.url}/admin/images`,
          {
            method: 'POST',
            agent: socketAgent,
            headers: { cookie, accept, 'content-type': contentType, 'content-length': body.length },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }),
            );
          },
        );
        req.on('error', reject);
        req.end(body);
      });

    try {
      const big = await post(await makeLargePng(11 * MB), 'text/html');
      expect(big.status).toBe(413);
      expect(big.text).toContain('The file is larger than the limit of 10 MiB.');
      expect(big.text).toContain('Upload images');
      expect(await storedCounts()).toEqual(before);

      const small = await post(await makeLargePng(1 * MB), 'application/json');
      expect(small.status).toBe(201);
      expect(connections).toBe(1);
      expect(await storedCounts()).toEqual({ objects: before.objects + 1, rows: before.rows + 1 });
      expect(fs.readdirSync(os.tmpdir()).length).toBe(tmpBefore);
    } finally {
      stack.runtime.server.off('connection', countConnection);
      socketAgent.destroy();
    }
  });
});

describe('C13 SVG', () => {
  it('answers 415 naming the accepted types and stores nothing', async () => {
    const svg = Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" onload="alert(1)"><rect width="10" height="10"/></svg>',
    );
    const before = await storedCounts();
    const response = await uploadFile(agent, svg, 'logo.svg', 'image/svg+xml');

    expect(response.status).toBe(415);
    expect((response.body as { error: { message: string } }).error.message).toBe(
      'The file is not a supported image. Accepted types: image/jpeg, image/png, image/gif, image/webp, image/avif.',
    );
    expect(await storedCounts()).toEqual(before);
  });
});

describe('C14 declared types are ignored', () => {
  it('rejects HTML sent as x.png with image/png', async () => {
    const before = await storedCounts();
    const html = Buffer.from('<!doctype html><html><body><script>alert(1)</script></body></html>');
    const response = await uploadFile(agent, html, 'x.png', 'image/png');

    expect(response.status).toBe(415);
    expect(await storedCounts()).toEqual(before);
  });

  it('stores a real PNG sent as text/html as image/png', async () => {
    const png = await makeImage('png');
    const response = await uploadFile(agent, png, 'page.html', 'text/html');
    const id = (response.body as { images: { id: string }[] }).images[0]?.id ?? '';
    const location = (await agent.get(`/image/${id}`).redirects(0)).headers.location ?? '';
    const object = await fetch(location);

    expect(response.status).toBe(201);
    expect(object.headers.get('content-type')).toBe('image/png');
  });

  it('rejects a PNG signature followed by HTML', async () => {
    const before = await storedCounts();
    const polyglot = Buffer.concat([
      Buffer.from('89504e470d0a1a0a', 'hex'),
      Buffer.from('<html><script>alert(1)</script></html>'),
    ]);
    const response = await uploadFile(agent, polyglot, 'x.png', 'image/png');

    expect(response.status).toBe(415);
    expect(await storedCounts()).toEqual(before);
  });

  it('sets nosniff on the image redirect', async () => {
    const { id } = await uploadFixture(agent);
    const response = await agent.get(`/image/${id}`).redirects(0);

    expect(response.headers['x-content-type-options']).toBe('nosniff');
  });
});

describe('POST /admin/images', () => {
  it.each(['jpeg', 'png', 'gif', 'webp', 'avif'] as const)(
    'accepts %s with its dimensions',
    async (format) => {
      const bytes = await makeImage(format, 21, 13);
      const { id } = await uploadFixture(agent, bytes, `picture.${format}`);
      const row = await stack.runtime.database.db
        .selectFrom('images')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirst();

      expect(row?.width).toBe(21);
      expect(row?.height).toBe(13);
      expect(row?.content_type).toBe(format === 'jpeg' ? 'image/jpeg' : `image/${format}`);
    },
  );

  it('stores several files from one form post', async () => {
    const before = await rowCount();
    const page = await agent.get('/admin/upload');
    const response = await agent
      .post('/admin/images')
      .field('_csrf', csrfFrom(page.text))
      .attach('images', await makeImage('png'), 'one.png')
      .attach('images', await makeImage('jpeg'), 'two.jpg')
      .attach('images', await makeImage('webp'), 'three.webp');

    expect(response.status).toBe(303);
    expect(response.headers.location).toBe('/?uploaded=3');
    expect(await rowCount()).toBe(before + 3);
  });

  it('answers 400 for an empty file', async () => {
    const before = await storedCounts();
    const response = await uploadFile(agent, Buffer.alloc(0), 'empty.png', 'image/png');

    expect(response.status).toBe(400);
    expect((response.body as { error: { message: string } }).error.message).toBe(
      'The upload could not be read: the file is empty.',
    );
    expect(await storedCounts()).toEqual(before);
  });

  it('answers 403 when the CSRF field is missing', async () => {
    const before = await storedCounts();
    const response = await agent
      .post('/admin/images')
      .set('Accept', 'application/json')
      .attach('images', await makeImage('png'), 'x.png');

    expect(response.status).toBe(403);
    expect(await storedCounts()).toEqual(before);
  });

  it('answers 400 for a body that is not multipart', async () => {
    const page = await agent.get('/admin/upload');
    const response = await agent
      .post('/admin/images')
      .set('Accept', 'application/json')
      .type('form')
      .send({ _csrf: csrfFrom(page.text) });

    expect(response.status).toBe(400);
  });

  it('answers 400 when no file is sent', async () => {
    const page = await agent.get('/admin/upload');
    const response = await agent
      .post('/admin/images')
      .set('Accept', 'application/json')
      .field('_csrf', csrfFrom(page.text));

    expect(response.status).toBe(400);
    expect((response.body as { error: { message: string } }).error.message).toBe(
      'The upload could not be read: no file was sent.',
    );
  });

  it('answers 400 for a body cut mid-part, storing nothing', async () => {
    const before = await storedCounts();
    const page = await agent.get('/admin/upload');
    const cookie = (await agent.get('/admin/upload')).request.cookies;
    const { body, contentType } = multipart(
      csrfFrom(page.text),
      'x.png',
      'image/png',
      await makeLargePng(2 * MB),
    );
    const cut = body.subarray(0, body.length - 200 * 1024);
    const response = await fetch(`${stack.url}/admin/images`, {
      method: 'POST',
      headers: { cookie, accept: 'application/json', 'content-type': contentType },
      body: cut,
    });

    expect(response.status).toBe(400);
    expect(await storedCounts()).toEqual(before);
  });
});

describe('POST /admin/images/:id/delete', () => {
  it('removes the row and the object', async () => {
    const { id } = await uploadFixture(agent);
    const before = await storedCounts();
    const gallery = await agent.get('/');
    const response = await agent
      .post(`/admin/images/${id}/delete`)
      .type('form')
      .send({ _csrf: csrfFrom(gallery.text) });

    expect(response.status).toBe(303);
    expect(await storedCounts()).toEqual({ objects: before.objects - 1, rows: before.rows - 1 });
    expect((await agent.get(`/image/${id}`).redirects(0)).status).toBe(404);
  });
});
