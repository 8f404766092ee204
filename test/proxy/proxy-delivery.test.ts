import { randomBytes } from 'node:crypto';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import type { Express } from 'express';
import sharp from 'sharp';
import request from 'supertest';
import { newImageId } from '../../src/images/image-id';
import type { ImageRecord } from '../../src/images/image-repository';
import {
  amazonHeaders,
  asBytes,
  BUCKET,
  bodyOf,
  bytesAfterHeadResponse,
  CACHE_CONTROL,
  createImageStore,
  createProxyApp,
  startEmbeddedS3Fixture,
  type EmbeddedS3Fixture,
  type ImageStore,
} from './proxy-fixture';

const RANGE_OBJECT_SIZE = 5_907_520;
const PAST_END_OBJECT_SIZE = 4_815_629;
const JPEG_SIZE = 123_456;
const TABLE_SIZE = 10_000;

let fixture: EmbeddedS3Fixture;
let store: ImageStore;
let app: Express;

beforeAll(async () => {
  fixture = await startEmbeddedS3Fixture({ recordRequests: true });
  store = createImageStore(fixture.client);
  app = createProxyApp(fixture.client, store.images);
});

afterAll(async () => {
  await fixture.close();
});

/** Requests for the object of `image` that reached S3 since `since` (an index into the log). */
function readsOf(image: Pick<ImageRecord, 'key'>, since = 0) {
  return fixture.requests.slice(since).filter((r) => r.path === `/${BUCKET}/${image.key}`);
}

function get(image: Pick<ImageRecord, 'id'>, headers: Record<string, string> = {}, query = '') {
  return asBytes(request(app).get(`/image/${image.id}${query}`).set(headers));
}

function head(image: Pick<ImageRecord, 'id'>, headers: Record<string, string> = {}) {
  return asBytes(request(app).head(`/image/${image.id}`).set(headers));
}

/** Build a real JPEG of exactly `size` bytes: a small picture padded with comment (COM) segments. */
async function jpegOfSize(size: number): Promise<Buffer> {
  const picture = await sharp({
    create: { width: 64, height: 64, channels: 3, background: '#3a6ea5' },
  })
    .jpeg()
    .toBuffer();
  const segments: Buffer[] = [];
  let padding = size - picture.length;
  while (padding > 0) {
    // A segment is FF FE, a 2-byte length that counts itself, then the payload: 4 to 65537 bytes.
    const total = padding > 65_537 ? Math.min(65_537, padding - 4) : padding;
    const segment = Buffer.alloc(total, 0x20);
    segment.writeUInt16BE(0xfffe, 0);
    segment.writeUInt16BE(total - 2, 2);
    segments.push(segment);
    padding -= total;
  }
  // The comments go right after the start-of-image marker.
  return Buffer.concat([picture.subarray(0, 2), ...segments, picture.subarray(2)]);
}

describe('GET /image/:id range, 5,907,520-byte object', () => {
  let bytes: Buffer;
  let image: ImageRecord;

  beforeAll(async () => {
    bytes = randomBytes(RANGE_OBJECT_SIZE);
    image = await store.storeImage(bytes);
  });

  it('bytes=0-1023 returns 206 with 1024 bytes', async () => {
    const res = await get(image, { Range: 'bytes=0-1023' });

    expect(res.status).toBe(206);
    expect(res.headers['content-range']).toBe('bytes 0-1023/5907520');
    expect(res.headers['content-length']).toBe('1024');
    expect(bodyOf(res).equals(bytes.subarray(0, 1024))).toBe(true);
  });

  it('bytes=0- returns 206, not 200', async () => {
    const res = await get(image, { Range: 'bytes=0-' });

    expect(res.status).toBe(206);
    expect(res.headers['content-range']).toBe('bytes 0-5907519/5907520');
    expect(res.headers['content-length']).toBe('5907520');
    expect(bodyOf(res).equals(bytes)).toBe(true);
  });

  it('bytes=100-200 returns 206 with 101 bytes', async () => {
    const res = await get(image, { Range: 'bytes=100-200' });

    expect(res.status).toBe(206);
    expect(res.headers['content-range']).toBe('bytes 100-200/5907520');
    expect(res.headers['content-length']).toBe('101');
    expect(bodyOf(res).equals(bytes.subarray(100, 201))).toBe(true);
  });

  it('no Range returns 200 with Accept-Ranges', async () => {
    const res = await get(image);

    expect(res.status).toBe(200);
    expect(res.headers['accept-ranges']).toBe('bytes');
    expect(res.headers['content-range']).toBeUndefined();
    expect(res.headers['content-length']).toBe('5907520');
    expect(bodyOf(res).equals(bytes)).toBe(true);
  });

  it('206 keeps the caching headers', async () => {
    const res = await get(image, { Range: 'bytes=0-1023' });

    expect(res.headers['cache-control']).toBe(CACHE_CONTROL);
    expect(res.headers.etag).toBe(image.etag);
    expect(res.headers['last-modified']).toBe(image.createdAt.toUTCString());
  });
});

describe('GET /image/:id range, 4,815,629-byte object', () => {
  let bytes: Buffer;
  let image: ImageRecord;

  beforeAll(async () => {
    bytes = randomBytes(PAST_END_OBJECT_SIZE);
    image = await store.storeImage(bytes);
  });

  it('bytes=4815629-4815629 returns 416 with the size', async () => {
    const res = await get(image, { Range: 'bytes=4815629-4815629' });

    expect(res.status).toBe(416);
    expect(res.headers['content-range']).toBe('bytes */4815629');
  });

  it('bytes=abc is ignored and returns 200', async () => {
    const res = await get(image, { Range: 'bytes=abc' });

    expect(res.status).toBe(200);
    expect(res.headers['content-range']).toBeUndefined();
    expect(res.headers['content-length']).toBe('4815629');
    expect(bodyOf(res).equals(bytes)).toBe(true);
  });
});

describe('GET /image/:id conditional', () => {
  let bytes: Buffer;
  let image: ImageRecord;
  let etag: string;
  let lastModified: string;

  beforeAll(async () => {
    bytes = randomBytes(50_000);
    image = await store.storeImage(bytes);
    const first = await get(image);
    etag = String(first.headers.etag);
    lastModified = String(first.headers['last-modified']);
  });

  it('If-None-Match with the ETag returns 304', async () => {
    const readsBefore = fixture.requests.length;
    const res = await get(image, { 'If-None-Match': etag });

    expect(res.status).toBe(304);
    expect(bodyOf(res)).toHaveLength(0);
    expect(res.headers.etag).toBe(etag);
    expect(res.headers['cache-control']).toBe(CACHE_CONTROL);
    expect(readsOf(image, readsBefore)).toEqual([]);
  });

  it('If-Modified-Since with Last-Modified returns 304', async () => {
    const readsBefore = fixture.requests.length;
    const res = await get(image, { 'If-Modified-Since': lastModified });

    expect(res.status).toBe(304);
    expect(bodyOf(res)).toHaveLength(0);
    expect(res.headers.etag).toBe(etag);
    expect(readsOf(image, readsBefore)).toEqual([]);
  });

  it('non-matching ETag returns 200 with the body', async () => {
    const readsBefore = fixture.requests.length;
    const res = await get(image, { 'If-None-Match': '"not-the-etag"' });

    expect(res.status).toBe(200);
    expect(bodyOf(res).equals(bytes)).toBe(true);
    // The row's ETag decided the condition, so S3 gets a plain GET.
    const reads = readsOf(image, readsBefore);
    expect(reads.map((r) => r.method)).toEqual(['GET']);
    expect(reads[0]?.headers['if-none-match']).toBeUndefined();
  });

  it('304 from S3 itself returns 304', async () => {
    // Without an ETag in the row, If-None-Match goes to S3.
    const rowWithoutEtag = await store.storeImage(bytes, { etag: null });
    const first = await get(rowWithoutEtag);
    const readsBefore = fixture.requests.length;
    const res = await get(rowWithoutEtag, { 'If-None-Match': String(first.headers.etag) });

    expect(first.headers.etag).toBe(image.etag);
    expect(readsOf(rowWithoutEtag, readsBefore)[0]?.headers['if-none-match']).toBe(
      first.headers.etag,
    );
    expect(res.status).toBe(304);
    expect(bodyOf(res)).toHaveLength(0);
    expect(res.headers['cache-control']).toBe(CACHE_CONTROL);
    // NOTE: the embedded S3 server sends no ETag with its 304, so this 304 has none either.
  });

  it('S3 mismatch returns 200 without the row ETag', async () => {
    const rowWithoutEtag = await store.storeImage(bytes, { etag: null });
    const res = await get(rowWithoutEtag, { 'If-None-Match': '"not-the-etag"' });

    expect(res.status).toBe(200);
    expect(bodyOf(res).equals(bytes)).toBe(true);
  });

  it('If-Match without row ETag goes to S3', async () => {
    // S3 then returns 412 for a mismatch. The embedded S3 server (4.0.4) ignores If-Match on
    // GetObject, so the 412 translation is covered by the s3-errors table instead.
    const rowWithoutEtag = await store.storeImage(bytes, { etag: null });
    const readsBefore = fixture.requests.length;
    const res = await get(rowWithoutEtag, { 'If-Match': '"not-the-etag"' });

    expect(res.status).toBe(200);
    const reads = readsOf(rowWithoutEtag, readsBefore);
    expect(reads.map((r) => r.method)).toEqual(['GET']);
    expect(reads[0]?.headers['if-match']).toBe('"not-the-etag"');
  });
});

describe('GET and HEAD /image/:id, 123,456-byte JPEG', () => {
  let bytes: Buffer;
  let image: ImageRecord;

  beforeAll(async () => {
    bytes = await jpegOfSize(JPEG_SIZE);
    image = await store.storeImage(bytes, { contentType: 'image/jpeg', originalName: 'beach.jpg' });
  });

  it('GET sends Content-Length, not chunked', async () => {
    const res = await get(image);

    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe('123456');
    expect(res.headers['transfer-encoding']).toBeUndefined();
    expect(res.headers['content-type']).toBe('image/jpeg');
    expect(bodyOf(res).equals(bytes)).toBe(true);
  });

  it('HEAD sends the same headers and no body', async () => {
    const getRes = await get(image);
    const readsBefore = fixture.requests.length;
    const headRes = await head(image);

    expect(headRes.status).toBe(getRes.status);
    const { date: getDate, ...getHeaders } = getRes.headers as Record<string, string>;
    const { date: headDate, ...headHeaders } = headRes.headers as Record<string, string>;
    expect(headHeaders).toEqual(getHeaders);
    expect(typeof getDate).toBe(typeof headDate);
    expect(readsOf(image, readsBefore).map((r) => r.method)).toEqual(['HEAD']);
    expect(await bytesAfterHeadResponse(app, `/image/${image.id}`)).toHaveLength(0);
  });

  it('HEAD for unknown id returns 404 without body', async () => {
    const path = `/image/${newImageId()}`;
    const res = await request(app).head(path);

    expect(res.status).toBe(404);
    expect(await bytesAfterHeadResponse(app, path)).toHaveLength(0);
  });
});

describe('GET /image/:id response headers', () => {
  let image: ImageRecord;

  beforeAll(async () => {
    image = await store.storeImage(randomBytes(2_000), { originalName: 'holiday.png' });
  });

  it('200 carries caching and safety headers', async () => {
    const res = await get(image);

    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe(CACHE_CONTROL);
    expect(res.headers.etag).toBe(image.etag);
    expect(res.headers['last-modified']).toBe(image.createdAt.toUTCString());
    expect(res.headers['accept-ranges']).toBe('bytes');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['content-disposition']).toBe('inline; filename=holiday.png');
    expect(amazonHeaders(res)).toEqual([]);
  });

  it('?download returns attachment', async () => {
    const res = await get(image, {}, '?download');

    expect(res.status).toBe(200);
    expect(res.headers['content-disposition']).toBe('attachment; filename=holiday.png');
  });

  it('non-ASCII name gets an ASCII fallback', async () => {
    const named = await store.storeImage(randomBytes(100), { originalName: '写真 1.png' });
    const res = await get(named, {}, '?download');
    const disposition = String(res.headers['content-disposition']);

    expect(disposition).toBe(
      `attachment; filename="?? 1.png"; filename*=UTF-8''%E5%86%99%E7%9C%9F%201.png`,
    );
    expect(/^[\x20-\x7e]*$/.test(disposition)).toBe(true);
  });

  it('416 carries no caching headers', async () => {
    const res = await get(image, { Range: 'bytes=2000-' });

    expect(res.status).toBe(416);
    expect(res.headers['cache-control']).toBeUndefined();
    expect(res.headers.etag).toBeUndefined();
  });
});

/** Validators of the table's object, for building its request headers. */
interface TableValidators {
  etag: string;
  lastModified: string;
  hourEarlier: string;
}

interface TableRow {
  name: string;
  method?: 'GET' | 'HEAD';
  headers: (validators: TableValidators) => Record<string, string>;
  status: number;
  contentRange?: string;
  contentLength?: number;
}

const TABLE: TableRow[] = [
  { name: 'INM exact ETag', headers: (v) => ({ 'If-None-Match': v.etag }), status: 304 },
  { name: 'INM weak ETag', headers: (v) => ({ 'If-None-Match': `W/${v.etag}` }), status: 304 },
  {
    name: 'INM list with ETag',
    headers: (v) => ({ 'If-None-Match': `"a", ${v.etag}` }),
    status: 304,
  },
  { name: 'INM *', headers: () => ({ 'If-None-Match': '*' }), status: 304 },
  { name: 'INM other ETag', headers: () => ({ 'If-None-Match': '"a", W/"b"' }), status: 200 },
  {
    name: 'INM other wins over IMS',
    headers: (v) => ({ 'If-None-Match': '"a"', 'If-Modified-Since': v.lastModified }),
    status: 200,
  },
  {
    name: 'IMS Last-Modified',
    headers: (v) => ({ 'If-Modified-Since': v.lastModified }),
    status: 304,
  },
  {
    name: 'IMS an hour earlier',
    headers: (v) => ({ 'If-Modified-Since': v.hourEarlier }),
    status: 200,
  },
  { name: 'IMS invalid date', headers: () => ({ 'If-Modified-Since': 'yesterday' }), status: 200 },
  { name: 'IM exact ETag', headers: (v) => ({ 'If-Match': v.etag }), status: 200 },
  { name: 'IM *', headers: () => ({ 'If-Match': '*' }), status: 200 },
  { name: 'IM weak ETag', headers: (v) => ({ 'If-Match': `W/${v.etag}` }), status: 412 },
  { name: 'IM other ETag', headers: () => ({ 'If-Match': '"a"' }), status: 412 },
  {
    name: 'IUS an hour earlier',
    headers: (v) => ({ 'If-Unmodified-Since': v.hourEarlier }),
    status: 412,
  },
  {
    name: 'IUS Last-Modified',
    headers: (v) => ({ 'If-Unmodified-Since': v.lastModified }),
    status: 200,
  },
  {
    name: 'Range with If-Range ETag',
    headers: (v) => ({ Range: 'bytes=0-99', 'If-Range': v.etag }),
    status: 206,
    contentRange: 'bytes 0-99/10000',
    contentLength: 100,
  },
  {
    name: 'Range with old If-Range ETag',
    headers: () => ({ Range: 'bytes=0-99', 'If-Range': '"old"' }),
    status: 200,
    contentLength: TABLE_SIZE,
  },
  {
    name: 'Range with weak If-Range',
    headers: (v) => ({ Range: 'bytes=0-99', 'If-Range': `W/${v.etag}` }),
    status: 200,
    contentLength: TABLE_SIZE,
  },
  {
    name: 'Range with If-Range date',
    headers: (v) => ({ Range: 'bytes=0-99', 'If-Range': v.lastModified }),
    status: 206,
    contentRange: 'bytes 0-99/10000',
    contentLength: 100,
  },
  {
    name: 'Range with old If-Range date',
    headers: (v) => ({ Range: 'bytes=0-99', 'If-Range': v.hourEarlier }),
    status: 200,
    contentLength: TABLE_SIZE,
  },
  {
    name: 'Range starting at the size',
    headers: () => ({ Range: 'bytes=10000-' }),
    status: 416,
    contentRange: 'bytes */10000',
  },
  {
    name: 'Range suffix',
    headers: () => ({ Range: 'bytes=-100' }),
    status: 206,
    contentRange: 'bytes 9900-9999/10000',
    contentLength: 100,
  },
  {
    name: 'Range suffix longer than the object',
    headers: () => ({ Range: 'bytes=-20000' }),
    status: 206,
    contentRange: 'bytes 0-9999/10000',
    contentLength: TABLE_SIZE,
  },
  {
    name: 'Range end past the size',
    headers: () => ({ Range: 'bytes=9990-20000' }),
    status: 206,
    contentRange: 'bytes 9990-9999/10000',
    contentLength: 10,
  },
  {
    name: 'Range zero suffix',
    headers: () => ({ Range: 'bytes=-0' }),
    status: 416,
    contentRange: 'bytes */10000',
  },
  {
    name: 'Range multiple',
    headers: () => ({ Range: 'bytes=0-1,5-6' }),
    status: 200,
    contentLength: TABLE_SIZE,
  },
  {
    name: 'Range multiple, one satisfiable',
    headers: () => ({ Range: 'bytes=0-1,20000-20001' }),
    status: 200,
    contentLength: TABLE_SIZE,
  },
  {
    name: 'Range inverted',
    headers: () => ({ Range: 'bytes=5-2' }),
    status: 200,
    contentLength: TABLE_SIZE,
  },
  {
    name: 'Range other unit',
    headers: () => ({ Range: 'items=0-5' }),
    status: 200,
    contentLength: TABLE_SIZE,
  },
  {
    name: 'Range with matching INM',
    headers: (v) => ({ Range: 'bytes=0-99', 'If-None-Match': v.etag }),
    status: 304,
  },
  {
    name: 'Range past the size with matching INM',
    headers: (v) => ({ Range: 'bytes=10000-', 'If-None-Match': v.etag }),
    status: 304,
  },
  {
    name: 'Range with other INM',
    headers: () => ({ Range: 'bytes=0-99', 'If-None-Match': '"a"' }),
    status: 206,
    contentRange: 'bytes 0-99/10000',
    contentLength: 100,
  },
  {
    name: 'HEAD ignores Range',
    method: 'HEAD',
    headers: () => ({ Range: 'bytes=0-99' }),
    status: 200,
    contentLength: TABLE_SIZE,
  },
  {
    name: 'HEAD with matching INM',
    method: 'HEAD',
    headers: (v) => ({ 'If-None-Match': v.etag }),
    status: 304,
  },
];

/** Slice out the bytes that a `Content-Range: bytes first-last/size` value names. */
function partOf(bytes: Buffer, contentRange: string | undefined): Buffer {
  const match = /^bytes (\d+)-(\d+)\/\d+$/.exec(contentRange ?? '');
  if (!match) throw new Error(`Not a satisfied Content-Range: ${String(contentRange)}`);
  return bytes.subarray(Number(match[1]), Number(match[2]) + 1);
}

describe('GET and HEAD /image/:id conditional and range table', () => {
  let bytes: Buffer;
  let image: ImageRecord;
  let validators: TableValidators;

  beforeAll(async () => {
    bytes = randomBytes(TABLE_SIZE);
    image = await store.storeImage(bytes);
    validators = {
      etag: String(image.etag),
      lastModified: image.createdAt.toUTCString(),
      hourEarlier: new Date(image.createdAt.getTime() - 3_600_000).toUTCString(),
    };
  });

  it.each(TABLE)('$name returns $status', async (row) => {
    const headers = row.headers(validators);
    const res = row.method === 'HEAD' ? await head(image, headers) : await get(image, headers);

    expect(res.status).toBe(row.status);
    expect(res.headers['content-range']).toBe(row.contentRange);
    if (row.contentLength !== undefined) {
      expect(res.headers['content-length']).toBe(String(row.contentLength));
    }
    // supertest reads no body for HEAD. The HEAD tests above check the bytes on the wire.
    if (row.method === 'HEAD') return;
    if (row.status === 304) expect(bodyOf(res)).toHaveLength(0);
    if (row.status === 200) expect(bodyOf(res).equals(bytes)).toBe(true);
    if (row.status === 206) expect(bodyOf(res).equals(partOf(bytes, row.contentRange))).toBe(true);
  });
});

describe('GET /image/:id object missing from S3', () => {
  it('returns 404 and keeps serving', async () => {
    const gone = await store.storeImage(randomBytes(100));
    const kept = await store.storeImage(randomBytes(100));
    await fixture.client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: gone.key }));

    const goneRes = await get(gone);
    const goneHead = await head(gone);
    const keptRes = await get(kept);

    expect(goneRes.status).toBe(404);
    expect(goneRes.headers['cache-control']).toBeUndefined();
    expect(goneHead.status).toBe(404);
    expect(keptRes.status).toBe(200);
  });

  it('logs the row that has no object', async () => {
    const warnings: { details: object; message: string }[] = [];
    const logger = {
      warn: (details: object, message: string) => warnings.push({ details, message }),
      error: () => undefined,
    };
    const loggingApp = createProxyApp(fixture.client, store.images, logger);
    const missing = await store.storeImage(randomBytes(100));
    await fixture.client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: missing.key }));

    const response = await request(loggingApp).get(`/image/${missing.id}`);

    expect(response.status).toBe(404);
    expect(warnings).toHaveLength(1);
    const { err, ...details } = (warnings[0]?.details ?? {}) as { err?: Error };
    expect(details).toEqual({
      event: 'object_missing',
      imageId: missing.id,
      key: missing.key,
    });
    // S3's code, so that an operator can tell a missing key from a denied read.
    expect(err?.name).toBe('NoSuchKey');
  });
});
