import { NoSuchKey, NotFound, S3ServiceException } from '@aws-sdk/client-s3';
import { errors } from '../../src/errors';
import { translateS3Error, type S3Operation } from '../../src/storage/s3-errors';

// Most rows are built by hand because the embedded S3 server cannot produce these faults on
// demand: throttling, S3's 403 for a missing key, InvalidRange with a size, S3 timeouts and resets.
// They are shaped as @aws-sdk/client-s3 3.1178 and Node 20 shape them. The refused connection,
// the silent server and the wrong signature run for real in proxy-s3-failures.test.ts.

/** Build an S3 error the way the SDK builds it from a response, named by S3's error code. */
function s3Error(name: string, httpStatusCode: number, extra: Record<string, unknown> = {}) {
  const error = new S3ServiceException({
    name,
    $fault: httpStatusCode >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode },
    message: `${name} from S3`,
  });
  return Object.assign(error, extra);
}

/** Build a Node socket error, renamed as @smithy/node-http-handler renames some of them. */
function socketError(code: string, name = 'Error') {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:9`), { code, name });
}

interface Row {
  name: string;
  error: unknown;
  operation?: S3Operation;
  status: number;
  code: string;
}

const ROWS: Row[] = [
  {
    name: 'NoSuchKey',
    error: new NoSuchKey({
      $metadata: { httpStatusCode: 404 },
      message: 'The key does not exist.',
    }),
    status: 404,
    code: 'IMAGE_NOT_FOUND',
  },
  {
    name: 'NotFound from HeadObject',
    error: new NotFound({ $metadata: { httpStatusCode: 404 }, message: 'UnknownError' }),
    status: 404,
    code: 'IMAGE_NOT_FOUND',
  },
  { name: 'bare 404', error: s3Error('Unknown', 404), status: 404, code: 'IMAGE_NOT_FOUND' },
  {
    name: 'AccessDenied on read',
    error: s3Error('AccessDenied', 403),
    status: 404,
    code: 'IMAGE_NOT_FOUND',
  },
  {
    name: 'bodiless 403 on HEAD',
    error: s3Error('Unknown', 403),
    status: 404,
    code: 'IMAGE_NOT_FOUND',
  },
  {
    name: 'AccessDenied on write',
    error: s3Error('AccessDenied', 403),
    operation: 'write',
    status: 502,
    code: 'STORAGE_FAILED',
  },
  {
    name: 'NoSuchKey on write',
    error: s3Error('NoSuchKey', 404),
    operation: 'write',
    status: 502,
    code: 'STORAGE_FAILED',
  },
  {
    name: 'SignatureDoesNotMatch',
    error: s3Error('SignatureDoesNotMatch', 403),
    status: 502,
    code: 'STORAGE_FAILED',
  },
  {
    name: 'InvalidAccessKeyId',
    error: s3Error('InvalidAccessKeyId', 403),
    status: 502,
    code: 'STORAGE_FAILED',
  },
  {
    name: 'NoSuchBucket',
    error: s3Error('NoSuchBucket', 404),
    status: 502,
    code: 'STORAGE_FAILED',
  },
  { name: 'SlowDown', error: s3Error('SlowDown', 503), status: 503, code: 'STORAGE_UNAVAILABLE' },
  { name: 'bare 503', error: s3Error('Unknown', 503), status: 503, code: 'STORAGE_UNAVAILABLE' },
  {
    name: '429',
    error: s3Error('TooManyRequestsException', 429),
    status: 503,
    code: 'STORAGE_UNAVAILABLE',
  },
  {
    name: 'throttling flag',
    error: s3Error('Custom', 400, { $retryable: { throttling: true } }),
    status: 503,
    code: 'STORAGE_UNAVAILABLE',
  },
  {
    name: 'ECONNREFUSED',
    error: socketError('ECONNREFUSED'),
    status: 503,
    code: 'STORAGE_UNAVAILABLE',
  },
  {
    name: 'ECONNRESET renamed TimeoutError',
    error: socketError('ECONNRESET', 'TimeoutError'),
    status: 503,
    code: 'STORAGE_UNAVAILABLE',
  },
  {
    name: 'retry wrapper of ECONNREFUSED',
    error: new Error('AWS SDK error wrapper for Error: connect ECONNREFUSED 127.0.0.1:9'),
    status: 503,
    code: 'STORAGE_UNAVAILABLE',
  },
  {
    name: 'requestTimeout',
    error: socketError('ETIMEDOUT', 'TimeoutError'),
    status: 504,
    code: 'STORAGE_TIMEOUT',
  },
  {
    name: 'connection timeout',
    error: Object.assign(new Error('did not establish a connection'), { name: 'TimeoutError' }),
    status: 504,
    code: 'STORAGE_TIMEOUT',
  },
  {
    name: 'S3 RequestTimeout',
    error: s3Error('RequestTimeout', 400),
    status: 504,
    code: 'STORAGE_TIMEOUT',
  },
  { name: '304 from S3', error: s3Error('Unknown', 304), status: 304, code: 'NOT_MODIFIED' },
  {
    name: 'abort signal',
    error: Object.assign(new Error('Request aborted'), { name: 'AbortError' }),
    status: 499,
    code: 'CLIENT_CLOSED_REQUEST',
  },
  {
    name: 'premature close',
    error: Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }),
    status: 499,
    code: 'CLIENT_CLOSED_REQUEST',
  },
  {
    name: 'PreconditionFailed',
    error: s3Error('PreconditionFailed', 412),
    status: 412,
    code: 'PRECONDITION_FAILED',
  },
  {
    name: 'InternalError',
    error: s3Error('InternalError', 500),
    status: 502,
    code: 'STORAGE_FAILED',
  },
  { name: 'thrown string', error: 'boom', status: 502, code: 'STORAGE_FAILED' },
  { name: 'undefined', error: undefined, status: 502, code: 'STORAGE_FAILED' },
];

describe('translateS3Error', () => {
  it.each(ROWS)('$name returns $status', ({ error, operation, status, code }) => {
    const translated = translateS3Error(error, operation);

    expect(translated.status).toBe(status);
    expect(translated.code).toBe(code);
    expect(translated.cause).toBe(error);
  });

  it('503 carries Retry-After', () => {
    const translated = translateS3Error(s3Error('SlowDown', 503));

    expect(translated.headers).toEqual({ 'Retry-After': '5' });
  });

  it('InvalidRange returns 416 with the size', () => {
    const translated = translateS3Error(
      s3Error('InvalidRange', 416, { ActualObjectSize: '4815629' }),
    );

    expect(translated.status).toBe(416);
    expect(translated.headers).toEqual({ 'Content-Range': 'bytes */4815629' });
  });

  it('InvalidRange without size has no Content-Range', () => {
    const translated = translateS3Error(s3Error('InvalidRange', 416));

    expect(translated.status).toBe(416);
    expect(translated.headers).toBeUndefined();
  });

  it('HttpError passes through unchanged', () => {
    const original = errors.imageNotFound();

    expect(translateS3Error(original)).toBe(original);
  });

  it('304 marker counts as an HttpError', () => {
    const marker = errors.notModified();

    expect(translateS3Error(marker)).toBe(marker);
  });
});
