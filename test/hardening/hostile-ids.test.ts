import http from 'node:http';
import fc from 'fast-check';
import { isImageId, newImageId } from '../../src/images/image-id';
import { selectRange } from '../../src/http/range';
import { loggedInAgent, startTestStack, uploadFixture, type TestStack } from '../helpers/stack';

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

describe('isImageId', () => {
  it('never throws, and accepts exactly 22 characters of base64url', () => {
    fc.assert(
      fc.property(fc.anything(), (value) => {
        const expected =
          typeof value === 'string' &&
          value.length === 22 &&
          // UTF-16 code units, which is what the regular expression matches.
          value.split('').every((unit) => ID_ALPHABET.includes(unit));
        expect(isImageId(value)).toBe(expected);
      }),
      { numRuns: 5000 },
    );
  });

  it('rejects an id with any one character replaced by another', () => {
    const outside = fc
      .oneof(
        fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
        fc.constantFrom('.', '/', '%', '\0', ' ', 'Ａ', 'é'),
      )
      .filter((c) => !ID_ALPHABET.includes(c));
    fc.assert(
      fc.property(fc.nat({ max: 21 }), outside, (position, character) => {
        const id = newImageId().split('');
        id[position] = character;
        expect(isImageId(id.join(''))).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });

  it('accepts every id that newImageId makes', () => {
    for (let i = 0; i < 1000; i += 1) expect(isImageId(newImageId())).toBe(true);
  });
});

describe('selectRange', () => {
  const size = fc.oneof(fc.constantFrom(0, 1, 2, 1023, 1024, 5_907_520), fc.nat(), fc.maxSafeNat());
  const number = fc.oneof(
    fc.nat().map(String),
    fc.bigInt({ min: 0n, max: 10n ** 30n }).map(String),
    fc.constantFrom('', ' ', '-1', '+1', '1e3', '0x10', '00', '١٢'),
  );
  const header = fc.oneof(
    fc.string(),
    fc.string({ unit: 'grapheme' }),
    fc
      .tuple(fc.constantFrom('bytes=', 'BYTES =', 'bytes =', 'items=', ''), number, number)
      .map(([unit, first, last]) => `${unit}${first}-${last}`),
    fc.tuple(number).map(([suffix]) => `bytes=-${suffix}`),
    fc
      .array(fc.tuple(number, number), { minLength: 1, maxLength: 4 })
      .map((ranges) => `bytes=${ranges.map(([a, b]) => `${a}-${b}`).join(',')}`),
  );

  it('never throws, and a partial range always lies inside the representation', () => {
    fc.assert(
      fc.property(fc.option(header, { nil: undefined }), size, (value, sizeBytes) => {
        const selection = selectRange(value, sizeBytes);

        expect(['full', 'partial', 'unsatisfiable']).toContain(selection.kind);
        if (selection.kind !== 'partial') return;
        expect(Number.isSafeInteger(selection.start)).toBe(true);
        expect(Number.isSafeInteger(selection.end)).toBe(true);
        expect(selection.start).toBeGreaterThanOrEqual(0);
        expect(selection.start).toBeLessThanOrEqual(selection.end);
        expect(selection.end).toBeLessThan(sizeBytes);
      }),
      { numRuns: 10_000 },
    );
  });

  it('selects exactly the bytes of a valid closed range', () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 1, max: 10_000_000 })
          .chain((sizeBytes) =>
            fc.tuple(
              fc.constant(sizeBytes),
              fc.nat({ max: sizeBytes - 1 }),
              fc.nat({ max: 20_000_000 }),
            ),
          ),
        ([sizeBytes, start, length]) => {
          const selection = selectRange(`bytes=${start}-${start + length}`, sizeBytes);

          expect(selection).toEqual({
            kind: 'partial',
            start,
            end: Math.min(start + length, sizeBytes - 1),
          });
        },
      ),
    );
  });
});

/** GET a raw path, exactly as written: no client-side normalization of dots or escapes. */
function rawGet(
  url: string,
  path: string,
  cookie: string,
): Promise<{ status: number; location: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const request = http.request(
      {
        host: target.hostname,
        port: target.port,
        path,
        method: 'GET',
        headers: { cookie, accept: 'image/*' },
      },
      (response) => {
        let body = '';
        response.setEncoding('latin1');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, location: response.headers.location, body }),
        );
      },
    );
    request.on('error', reject);
    request.end();
  });
}

describe.each(['redirect', 'proxy'] as const)('hostile /image paths in %s mode', (mode) => {
  let stack: TestStack;
  let cookie: string;
  let id: string;
  let bucketPrefix: string;

  beforeAll(async () => {
    stack = await startTestStack({ DELIVERY_MODE: mode });
    const agent = await loggedInAgent(stack.url);
    ({ id } = await uploadFixture(agent));
    cookie = (await agent.get('/')).request.cookies;
    const endpoint = stack.runtime.embeddedS3?.endpoint ?? '';
    bucketPrefix = `${endpoint}/${stack.runtime.config.s3.bucket}/images/`;
  });

  afterAll(async () => {
    await stack.stop();
  });

  const paths: [string, (id: string) => string][] = [
    ['encoded traversal', () => '/image/..%2F..%2Fsecret.png'],
    ['encoded dots', () => '/image/%2e%2e'],
    ['encoded traversal to a page', () => '/image/%2e%2e%2f%2e%2e%2fadmin%2fusers'],
    ['raw traversal', () => '/image/../admin/users'],
    ['raw traversal after an id', (i) => `/image/${i}/../../admin/users`],
    ['an encoded slash', () => '/image/a%2Fb'],
    ['an encoded slash inside an id', (i) => `/image/${i.slice(0, 10)}%2F${i.slice(11)}`],
    ['a NUL byte', () => '/image/%00'],
    ['an id followed by NUL', (i) => `/image/${i}%00`],
    ['an id followed by an encoded dot and extension', (i) => `/image/${i}%2epng`],
    ['an id followed by an extension', (i) => `/image/${i}.png`],
    ['a space', () => '/image/%20'],
    ['300 characters', () => `/image/${'x'.repeat(300)}`],
    ['64 KB of characters', () => `/image/${'A'.repeat(64 * 1024)}`],
    ['a fullwidth-letter lookalike', (i) => `/image/${encodeURIComponent(`Ａ${i.slice(1)}`)}`],
    ['combining marks', (i) => `/image/${encodeURIComponent(`${i.slice(0, 21)}e\u0301`)}`],
    ['invalid UTF-8', () => '/image/%C3%28%A0%A1%FF%FE'],
    ['a broken escape', () => '/image/%zz'],
    ['a lone percent sign', () => '/image/%'],
    ['an id with a double-encoded slash', (i) => `/image/${i.slice(0, 21)}%252F`],
    ['backslashes', () => '/image/..%5C..%5Csecret'],
    ['a 23-character id', (i) => `/image/${i}A`],
    ['a 21-character id', (i) => `/image/${i.slice(1)}`],
    ['a matrix parameter', (i) => `/image/${i};jsessionid=x`],
  ];

  it.each(paths)('answers %s with 404 or 400 and no URL', async (_name, path) => {
    const response = await rawGet(stack.url, path(id), cookie);

    expect([400, 404, 414, 431]).toContain(response.status);
    expect(response.location).toBeUndefined();
    expect(response.body).not.toContain('X-Amz-');
    expect(response.body).not.toContain(stack.runtime.embeddedS3?.endpoint ?? 'no endpoint');
  });

  const queries: [string, string][] = [
    ['repeated download', '?download&download'],
    ['download as an array', '?download[]=x'],
    ['download with two values', '?download=a&download=b'],
    ['a response-content-type override', '?response-content-type=text/html'],
    [
      'a response-content-disposition override',
      '?response-content-disposition=attachment%3Bfilename%3Devil.html',
    ],
    ['signature parameters', '?X-Amz-Expires=604800&X-Amz-Signature=00&X-Amz-Credential=x'],
    ['an encoded key', '?key=..%2F..%2Fsecret.png&Key=secret'],
    ['a 4 KB query', `?${'a=1&'.repeat(1024)}`],
  ];

  it.each(queries)('keeps the URL inside the image prefix with %s', async (_name, query) => {
    const response = await rawGet(stack.url, `/image/${id}${query}`, cookie);

    // Proxy mode streams every image, and embedded redirect mode streams downloads (the emulator
    // rejects signed RFC 5987 file names), so neither hands out a URL to check.
    if (mode === 'proxy' || /[?&]download(=|&|$)/.test(query)) {
      expect(response.status).toBe(200);
      expect(response.location).toBeUndefined();
      return;
    }
    expect(response.status).toBe(302);
    const location = new URL(response.location ?? '');
    const key = await stack.runtime.database.db
      .selectFrom('images')
      .select('s3_key')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    expect(`${location.origin}${location.pathname}`).toBe(
      `${bucketPrefix}${key.s3_key.slice('images/'.length)}`,
    );
    // Only s3gate's own parameters: nothing from the client's query reaches the signed URL.
    const allowed = new Set([
      'X-Amz-Algorithm',
      'X-Amz-Content-Sha256',
      'X-Amz-Credential',
      'X-Amz-Date',
      'X-Amz-Expires',
      'X-Amz-Signature',
      'X-Amz-SignedHeaders',
      'x-id',
      'response-content-disposition',
    ]);
    for (const name of location.searchParams.keys()) expect(allowed).toContain(name);
    expect(location.searchParams.getAll('X-Amz-Signature')).toHaveLength(1);
    expect(location.searchParams.get('X-Amz-Signature')).not.toBe('00');
    expect(Number(location.searchParams.get('X-Amz-Expires'))).toBeLessThanOrEqual(
      stack.runtime.config.signedUrl.windowSeconds +
        stack.runtime.config.signedUrl.minValiditySeconds,
    );
    const disposition = location.searchParams.get('response-content-disposition');
    if (disposition !== null) expect(disposition).toMatch(/^attachment; filename=fixture\.png$/);
  });
});
