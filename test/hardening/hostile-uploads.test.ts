import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { parse as parseContentDisposition } from 'content-disposition';
import { ImageRepository } from '../../src/images/image-repository';
import { storedCounts } from '../helpers/faults';
import { makeImage } from '../helpers/images';
import { csrfFrom, loggedInAgent, startTestStack, type TestStack } from '../helpers/stack';

let stack: TestStack;
let csrf: string;
let cookie: string;

beforeAll(async () => {
  stack = await startTestStack();
  const agent = await loggedInAgent(stack.url);
  const page = await agent.get('/admin/upload');
  csrf = csrfFrom(page.text);
  cookie = page.request.cookies;
});

afterAll(async () => {
  await stack.stop();
});

type Format = 'png' | 'jpeg' | 'gif' | 'webp' | 'avif';
const FORMATS: Format[] = ['png', 'jpeg', 'gif', 'webp', 'avif'];

/** A part of a hand-made multipart body; a part without `filename` is a plain field. */
interface Part {
  field?: string;
  filename?: string;
  type?: string;
  content: Buffer;
}

const BOUNDARY = '----s3gate-hostile-boundary';

/** Encode parts as multipart/form-data, with the CSRF field first unless `csrfFirst` is false. */
function encode(parts: Part[], csrfFirst = true): Buffer {
  const all: Part[] = csrfFirst
    ? [{ field: '_csrf', content: Buffer.from(csrf) }, ...parts]
    : parts;
  const chunks: Buffer[] = [];
  for (const part of all) {
    const disposition =
      `form-data; name="${part.field ?? 'images'}"` +
      (part.filename === undefined ? '' : `; filename="${part.filename}"`);
    const type = part.filename === undefined ? '' : `Content-Type: ${part.type ?? 'image/png'}\r\n`;
    chunks.push(
      Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: ${disposition}\r\n${type}\r\n`),
      part.content,
      Buffer.from('\r\n'),
    );
  }
  chunks.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(chunks);
}

interface UploadResult {
  status: number;
  error: { code: string; message: string } | undefined;
  ids: string[];
}

/** POST a raw body to the upload route as a script would, asking for JSON. */
async function post(
  body: Buffer,
  contentType = `multipart/form-data; boundary=${BOUNDARY}`,
): Promise<UploadResult> {
  const response = await fetch(`${stack.url}/admin/images`, {
    method: 'POST',
    headers: { cookie, accept: 'application/json', 'content-type': contentType },
    body,
  });
  const json = (await response.json()) as {
    error?: { code: string; message: string };
    images?: { id: string }[];
  };
  return { status: response.status, error: json.error, ids: (json.images ?? []).map((i) => i.id) };
}

/** Upload one file part. */
function postFile(content: Buffer, filename: string, type = 'image/png'): Promise<UploadResult> {
  return post(encode([{ filename, type, content }]));
}

const HTML = Buffer.from(
  '<!doctype html><html><body><script>alert(document.cookie)</script></body></html>\n',
);
const PHP = Buffer.from('<?php system($_GET["cmd"]); ?>\n');

const TRAILING_DATA =
  'The file is not a complete, valid image: it has data after the end of the image.';
const TRUNCATED = 'The file is not a complete, valid image: the file ends before the image does.';
const UNSUPPORTED =
  'The file is not a supported image. Accepted types: image/jpeg, image/png, image/gif, image/webp, image/avif.';

describe('rejected uploads store nothing', () => {
  // Each case: what is sent, then the status and message it must get. Every case also checks
  // that no object and no row appeared.
  const cases: [string, () => Promise<UploadResult>, number, string | RegExp][] = [
    [
      'an empty file',
      () => postFile(Buffer.alloc(0), 'empty.png'),
      400,
      'The upload could not be read: the file is empty.',
    ],
    ['HTML named photo.png', () => postFile(HTML, 'photo.png'), 415, UNSUPPORTED],
    [
      'a PHP script named avatar.jpg',
      () => postFile(PHP, 'avatar.jpg', 'image/jpeg'),
      415,
      UNSUPPORTED,
    ],
    [
      'HTML with a double extension',
      () => postFile(HTML, 'photo.png.html', 'text/html'),
      415,
      UNSUPPORTED,
    ],
    [
      'a PHP script with a double extension',
      () => postFile(PHP, 'shell.php.png'),
      415,
      UNSUPPORTED,
    ],
    [
      'a PNG signature followed by HTML',
      async () => postFile(Buffer.concat([(await makeImage('png')).subarray(0, 8), HTML]), 'x.png'),
      415,
      UNSUPPORTED,
    ],
    [
      'a PNG cut in half',
      async () => {
        const png = await makeImage('png', 64, 64, '#123456');
        return postFile(png.subarray(0, Math.ceil(png.length / 2)), 'half.png');
      },
      422,
      TRUNCATED,
    ],
    ...FORMATS.map((format): [string, () => Promise<UploadResult>, number, string] => [
      `a ${format} without its last bytes`,
      async () => {
        const image = await makeImage(format, 48, 32);
        return postFile(image.subarray(0, image.length - 7), `cut.${format}`);
      },
      422,
      TRUNCATED,
    ]),
    ...FORMATS.map((format): [string, () => Promise<UploadResult>, number, RegExp] => [
      `a complete ${format} followed by HTML`,
      async () => postFile(Buffer.concat([await makeImage(format), HTML]), `polyglot.${format}`),
      422,
      // AVIF has no end marker: the appended text reads as the header of one more box, whose
      // size runs past the end of the file (or whose type is not a box type).
      format === 'avif'
        ? /^The file is not a complete, valid image: (the file ends before the image does|its structure is damaged)\.$/
        : /^The file is not a complete, valid image: it has data after the end of the image\.$/,
    ]),
    [
      'a complete GIF followed by a script',
      async () => postFile(Buffer.concat([await makeImage('gif'), PHP]), 'polyglot.gif'),
      422,
      TRAILING_DATA,
    ],
    [
      '21 files, one over the limit',
      async () => {
        const png = await makeImage('png');
        return post(
          encode(Array.from({ length: 21 }, (_, i) => ({ filename: `${i}.png`, content: png }))),
        );
      },
      400,
      'The upload could not be read: at most 20 files per upload.',
    ],
    [
      'an image sent as a plain field',
      async () => post(encode([{ field: 'images', content: await makeImage('png') }])),
      400,
      'The upload could not be read: no file was sent.',
    ],
    [
      '21 plain fields',
      () =>
        post(
          encode(
            Array.from({ length: 21 }, (_, i) => ({ field: `f${i}`, content: Buffer.from('x') })),
          ),
        ),
      400,
      'The upload could not be read: too many form fields.',
    ],
    [
      'a multipart type without a boundary',
      async () =>
        post(
          encode([{ filename: 'x.png', content: await makeImage('png') }]),
          'multipart/form-data',
        ),
      400,
      'The upload could not be read: expected a multipart/form-data body.',
    ],
    [
      'a body cut inside the file part',
      async () => {
        const body = encode([{ filename: 'x.png', content: await makeImage('png', 64, 64) }]);
        return post(body.subarray(0, body.length - 60));
      },
      400,
      /^The upload could not be read: Unexpected end of (form|file)\.$/,
    ],
    [
      'a body without its closing boundary',
      async () => {
        const body = encode([{ filename: 'x.png', content: await makeImage('png') }]);
        return post(body.subarray(0, body.length - `--${BOUNDARY}--\r\n`.length));
      },
      400,
      'The upload could not be read: Unexpected end of form.',
    ],
    [
      'the CSRF field after the file',
      async () =>
        post(
          encode(
            [
              { filename: 'x.png', content: await makeImage('png') },
              { field: '_csrf', content: Buffer.from(csrf) },
            ],
            false,
          ),
        ),
      403,
      'The form expired or came from another site. Reload the page and try again.',
    ],
  ];

  it.each(cases)('%s', async (_name, send, status, message) => {
    const before = await storedCounts(stack);
    const result = await send();

    expect(result.status).toBe(status);
    if (typeof message === 'string') expect(result.error?.message).toBe(message);
    else expect(result.error?.message).toMatch(message);
    expect(await storedCounts(stack)).toEqual(before);
  });
});

describe('accepted uploads with misleading names', () => {
  async function storedName(
    id: string,
  ): Promise<{ name: string; contentType: string; disposition: string }> {
    const image = await new ImageRepository(stack.runtime.database.db).findById(id);
    if (!image) throw new Error(`no row for ${id}`);
    const head = await stack.runtime.s3Client.send(
      new HeadObjectCommand({ Bucket: stack.runtime.config.s3.bucket, Key: image.key }),
    );
    return {
      name: image.originalName,
      contentType: head.ContentType ?? '',
      disposition: head.ContentDisposition ?? '',
    };
  }

  // The type comes from the bytes, so a real image is stored whatever its name. The name gets
  // the extension of the real type, so a downloaded copy never opens as a page.
  it.each([
    ['photo.jpg', 'photo.png'],
    ['photo.png.html', 'photo.png.png'],
    ['report.HTML', 'report.png'],
    ['no-extension', 'no-extension.png'],
    ['already.PNG', 'already.PNG'],
  ])('stores a real PNG named %s as %s', async (filename, expected) => {
    const result = await postFile(await makeImage('png'), filename, 'text/html');

    expect(result.status).toBe(201);
    const stored = await storedName(result.ids[0] ?? '');
    expect(stored.name).toBe(expected);
    expect(stored.contentType).toBe('image/png');
    expect(parseContentDisposition(stored.disposition).parameters.filename).toBe(expected);
  });

  it('keeps .jpeg on a JPEG', async () => {
    const result = await postFile(await makeImage('jpeg'), 'holiday.jpeg', 'image/jpeg');

    expect((await storedName(result.ids[0] ?? '')).name).toBe('holiday.jpeg');
  });

  it('shortens a 2,000-character name to 255 characters without breaking a character', async () => {
    // Emoji take two UTF-16 code units each, so a cut by code units would split one in half.
    const result = await postFile(await makeImage('png'), `${'😀'.repeat(2000)}.png`);

    expect(result.status).toBe(201);
    const { name } = await storedName(result.ids[0] ?? '');
    expect(Array.from(name)).toHaveLength(255);
    expect(name.endsWith('😀.png')).toBe(true);
    // A lone surrogate would make this throw.
    expect(() => encodeURIComponent(name)).not.toThrow();
  });

  it('answers 400 for a part header longer than the parser allows', async () => {
    const before = await storedCounts(stack);
    const result = await postFile(await makeImage('png'), `${'a'.repeat(100_000)}.png`);

    expect(result.status).toBe(400);
    expect(result.error?.message).toMatch(/^The upload could not be read: /);
    expect(await storedCounts(stack)).toEqual(before);
  });
});
