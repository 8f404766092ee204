import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import type { RetryErrorInfo, RetryErrorType, RetryStrategyV2 } from '@smithy/types';
import { SIGNING_TIME_MESSAGE, THROTTLING_NAMES } from './s3-errors';
import { createUrlSigner } from './url-signer';

/** One GetObject or HeadObject read. */
export interface ObjectReadRequest {
  method: 'GET' | 'HEAD';
  key: string;
  /** `Range` header for S3, such as `bytes=0-1023`. */
  range?: string | undefined;
  /** `If-Match` and `If-None-Match` headers for S3 to evaluate against the object's ETag. */
  ifMatch?: string | undefined;
  ifNoneMatch?: string | undefined;
}

/** S3's successful response to a read. */
export interface ObjectReadResult {
  /** 200, 206 for a range, or 304 when S3 evaluated If-None-Match. */
  status: 200 | 206 | 304;
  contentLength: number | undefined;
  contentRange: string | undefined;
  etag: string | undefined;
  /** Body of a GET with status 200 or 206, which the caller must consume or destroy. */
  body: Readable | undefined;
}

/** Options of `createObjectReader`. */
export interface ObjectReaderOptions {
  /** Client whose credentials sign the reads and whose HTTP handler sends them. */
  client: S3Client;
  bucket: string;
  /**
   * Called with the client's new clock offset in ms after S3 rejected a read's signing time and
   * its Date header corrected the offset, such as to log it. Default: ignore.
   */
  onClockOffsetCorrected?: ((offsetMs: number) => void) | undefined;
}

/** Reader made by `createObjectReader`. */
export interface ObjectReader {
  /**
   * Read an object, retrying connection failures and throttling as the client's retry strategy
   * allows. Any other status throws an `S3ReadError`, and `translateS3Error` maps every error.
   */
  read(request: ObjectReadRequest, abortSignal: AbortSignal): Promise<ObjectReadResult>;
}

/**
 * Error for an S3 response with a status other than 200, 206 or 304. Its fields have the names of
 * the SDK's service exceptions, so `translateS3Error` reads both the same way.
 */
export class S3ReadError extends Error {
  /** Object size that S3 reports with InvalidRange. */
  readonly ActualObjectSize: string | undefined;
  /** S3's request id, for AWS support. */
  readonly RequestId: string | undefined;
  readonly $metadata: { httpStatusCode: number };
  /**
   * True when S3 rejected the signing time: by its code or message, or, for a bodiless 403 such
   * as HEAD gets, by a Date header CLOCK_SKEW_MS or more away from the app's clock.
   */
  readonly signingTimeRejected: boolean;

  constructor(status: number, document: ErrorDocument, clockSkewed = false) {
    // The message names S3's status, code and message but never the URL, whose signature is a
    // bearer token.
    const code = document.code === undefined ? '' : ` ${document.code}`;
    const detail = document.message === undefined ? '' : `: ${document.message}`;
    super(`S3 responded ${status}${code} to an object read${detail}`);
    this.name = document.code ?? `Http${status}`;
    this.$metadata = { httpStatusCode: status };
    this.ActualObjectSize = document.actualObjectSize;
    this.RequestId = document.requestId;
    this.signingTimeRejected =
      status === 403 &&
      (clockSkewed ||
        document.code === 'RequestTimeTooSkewed' ||
        SIGNING_TIME_MESSAGE.test(document.message ?? ''));
  }
}

/** Fields of S3's XML error document. */
interface ErrorDocument {
  code: string | undefined;
  message: string | undefined;
  actualObjectSize: string | undefined;
  requestId: string | undefined;
}

/** The request shape of the SDK's HTTP handlers (HttpRequest of @smithy/core). */
interface HandlerRequest {
  protocol: string;
  hostname: string;
  port: number | undefined;
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
}

interface RequestHandler {
  handle(
    request: HandlerRequest,
    options: { abortSignal: AbortSignal },
  ): Promise<{ response: { statusCode: number; headers: Record<string, string>; body: unknown } }>;
}

// Signed URLs for the app's own reads are used at once, so a short window suffices. Each URL
// stays valid for at least minValiditySeconds after it is handed out.
const READ_WINDOW_SECONDS = 300;
const READ_MIN_VALIDITY_SECONDS = 300;

// S3's error documents are a few hundred bytes. Anything longer is not parsed for its code.
const MAX_ERROR_BODY_BYTES = 16 * 1024;

// The socket and DNS codes that the SDK's retry middleware retries (@smithy/core 3.41).
const TRANSIENT_SOCKET_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

// S3 rejects a presigned request whose signing time is too far from its own clock. The reader
// corrects the client's clock offset only for a difference this large, because the Date header
// has a resolution of one second and smaller errors do not invalidate the reader's URLs.
const CLOCK_SKEW_MS = 5 * 60 * 1000;

/** Retry-After of an S3 error response, passed to the retry strategy as its hint. */
const retryAfterHints = new WeakMap<object, Date>();

/**
 * Create a reader that fetches objects with SigV4 presigned requests, sent through the client's
 * own HTTP handler. The handler keeps the client's socket pool and its connection and request
 * timeouts, and the client's retry strategy decides retries.
 *
 * `client.send(new GetObjectCommand(...))` runs the SDK's middleware stack on every read. In a CPU
 * profile of bench/proxy.ts (1 MiB objects), that stack took about a quarter of the app's CPU
 * time. A presigned URL is memoized for its signing window, so most reads sign nothing.
 */
export function createObjectReader(options: ObjectReaderOptions): ObjectReader {
  const { client } = options;
  const signer = createUrlSigner({
    client,
    bucket: options.bucket,
    windowSeconds: READ_WINDOW_SECONDS,
    minValiditySeconds: READ_MIN_VALIDITY_SECONDS,
    // The client's clock offset, which the reader and the SDK set from S3's Date header, so that
    // a slow or fast app clock still signs URLs that S3 accepts.
    now: () => Date.now() + client.config.systemClockOffset,
  });
  const handler = client.config.requestHandler as unknown as RequestHandler;

  async function readOnce(
    request: ObjectReadRequest,
    abortSignal: AbortSignal,
  ): Promise<ObjectReadResult> {
    const signed = splitSignedUrl(await signer.sign({ key: request.key, method: request.method }));
    const headers: Record<string, string> = {};
    if (request.range !== undefined) headers.range = request.range;
    if (request.ifMatch !== undefined) headers['if-match'] = request.ifMatch;
    if (request.ifNoneMatch !== undefined) headers['if-none-match'] = request.ifNoneMatch;

    // The path goes out as signed, because passing the query as `query` would encode it again.
    const { response } = await handler.handle(
      {
        protocol: signed.origin.protocol,
        hostname: signed.origin.hostname,
        port: signed.origin.port === '' ? undefined : Number(signed.origin.port),
        method: request.method,
        path: signed.pathAndQuery,
        query: {},
        headers: { ...headers, host: signed.origin.host },
      },
      { abortSignal },
    );
    const body = toNodeStream(response.body);
    const status = response.statusCode;

    if (status === 200 || status === 206 || status === 304) {
      const length = response.headers['content-length'];
      const hasBody = request.method === 'GET' && status !== 304;
      if (!hasBody) body?.resume();
      if (hasBody && !body) {
        throw new TypeError(
          'The S3 client returned no body stream for an object read. Give it a Node or fetch HTTP handler, such as the one createS3Client sets.',
        );
      }
      return {
        status,
        contentLength: length === undefined ? undefined : Number(length),
        contentRange: status === 206 ? response.headers['content-range'] : undefined,
        etag: response.headers.etag,
        body: hasBody ? body : undefined,
      };
    }

    const text = body ? await readErrorDocument(body) : '';
    const clockSkewMs = status === 403 ? skewOfServerClock(response.headers.date) : 0;
    const error = new S3ReadError(
      status,
      {
        code: elementText(text, 'Code'),
        message: elementText(text, 'Message'),
        actualObjectSize: elementText(text, 'ActualObjectSize'),
        requestId: elementText(text, 'RequestId') ?? response.headers['x-amz-request-id'],
      },
      Math.abs(clockSkewMs) >= CLOCK_SKEW_MS,
    );
    const retryAfter = retryAfterDate(response.headers['retry-after']);
    if (retryAfter) retryAfterHints.set(error, retryAfter);

    // Sign the next attempt with S3's time.
    if (error.signingTimeRejected && Math.abs(clockSkewMs) >= CLOCK_SKEW_MS) {
      client.config.systemClockOffset += clockSkewMs;
      options.onClockOffsetCorrected?.(client.config.systemClockOffset);
    }
    throw error;
  }

  /**
   * Return how far S3's clock, from the Date header of its response, is ahead of the app's clock
   * with the client's offset applied, in ms. 0 without a valid Date header. The SDK
   * (@aws-sdk/core 3.1178) sets its offset from the Date header of each of its own responses.
   */
  function skewOfServerClock(dateHeader: string | undefined): number {
    const serverTime = dateHeader === undefined ? Number.NaN : Date.parse(dateHeader);
    if (Number.isNaN(serverTime)) return 0;
    return serverTime - (Date.now() + client.config.systemClockOffset);
  }

  /**
   * Read once, and once more if S3 rejected the signing time and its Date header corrected the
   * clock offset. The second signature then uses S3's time.
   */
  async function readOnceCorrectingClock(
    request: ObjectReadRequest,
    abortSignal: AbortSignal,
  ): Promise<ObjectReadResult> {
    const offsetBefore = client.config.systemClockOffset;
    try {
      return await readOnce(request, abortSignal);
    } catch (error) {
      const corrected = client.config.systemClockOffset !== offsetBefore;
      if (!(error instanceof S3ReadError) || !error.signingTimeRejected || !corrected) throw error;
      return readOnce(request, abortSignal);
    }
  }

  async function read(
    request: ObjectReadRequest,
    abortSignal: AbortSignal,
  ): Promise<ObjectReadResult> {
    const strategy: unknown = await client.config.retryStrategy();
    if (!isRetryStrategyV2(strategy)) return readOnceCorrectingClock(request, abortSignal);

    let token = await strategy.acquireInitialRetryToken('s3gate:object-read');
    for (;;) {
      try {
        const result = await readOnceCorrectingClock(request, abortSignal);
        strategy.recordSuccess(token);
        return result;
      } catch (error) {
        const errorType = retryErrorType(error);
        if (errorType === undefined || abortSignal.aborted) throw error;
        try {
          // The standard strategy rejects the retry when attempts or its retry quota run out. The
          // strategy of createS3Client also rejects it after a timeout.
          token = await strategy.refreshRetryTokenForRetry(token, {
            errorType,
            error: error as RetryErrorInfo['error'],
            retryAfterHint:
              typeof error === 'object' && error !== null ? retryAfterHints.get(error) : undefined,
          });
        } catch {
          throw error;
        }
        // After an abort during the wait, the handler rejects the next attempt at once.
        await waitForRetry(token.getRetryDelay(), abortSignal);
      }
    }
  }

  return { read };
}

function isRetryStrategyV2(strategy: unknown): strategy is RetryStrategyV2 {
  return (
    typeof strategy === 'object' &&
    strategy !== null &&
    'acquireInitialRetryToken' in strategy &&
    'refreshRetryTokenForRetry' in strategy &&
    'recordSuccess' in strategy
  );
}

/**
 * Classify a failed read much as the SDK's retry middleware does: dropped or refused connections
 * and 5xx responses are transient, and 429 or S3's throttling codes are throttling. Every 503
 * counts as throttling here, because S3 sends its SlowDown with 503. Anything else, such as a 404
 * or a 403, is not retried.
 */
function retryErrorType(error: unknown): RetryErrorType | undefined {
  if (error instanceof S3ReadError) {
    const status = error.$metadata.httpStatusCode;
    if (status === 429 || status === 503 || THROTTLING_NAMES.has(error.name)) return 'THROTTLING';
    if (status === 500 || status === 502 || status === 504) return 'TRANSIENT';
    // S3's 400 RequestTimeout: the request body stalled, which a new attempt may not.
    if (error.name === 'RequestTimeout') return 'TRANSIENT';
    return undefined;
  }
  // Socket errors are read by their fields, not with instanceof: under Jest, errors from Node's
  // core modules come from another realm and fail `instanceof Error`.
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, name } = error as { code?: unknown; name?: unknown };
  if (typeof code === 'string' && TRANSIENT_SOCKET_CODES.has(code)) return 'TRANSIENT';
  if (name === 'TimeoutError') return 'TRANSIENT';
  return undefined;
}

/** Sleep before the next attempt. The standard strategy of @smithy/core 3 waits itself and returns 0. */
async function waitForRetry(delayMs: number, abortSignal: AbortSignal): Promise<void> {
  if (delayMs <= 0 || abortSignal.aborted) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, delayMs);
    abortSignal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      abortSignal.removeEventListener('abort', done);
      resolve();
    }
  });
}

/**
 * Return a response body as a Node stream. Node's handler returns an IncomingMessage, and a
 * fetch-based handler (@smithy/fetch-http-handler) a web ReadableStream.
 */
function toNodeStream(body: unknown): Readable | undefined {
  if (body instanceof Readable) return body;
  if (body instanceof ReadableStream) return Readable.fromWeb(body);
  return undefined;
}

/** Read S3's XML error document, up to MAX_ERROR_BODY_BYTES. */
async function readErrorDocument(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      size += chunk.length;
      if (size > MAX_ERROR_BODY_BYTES) break;
    }
  } catch {
    // A body cut short still gave its status, which is enough to classify the failure.
  } finally {
    // Breaking out of the loop destroys the body, which frees the socket.
    if (!body.readableEnded) body.destroy();
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Text of the first `<name>` element of S3's flat error document. */
function elementText(document: string, name: string): string | undefined {
  const match = new RegExp(`<${name}>([^<]{1,200})</${name}>`).exec(document);
  return match?.[1];
}

/**
 * Split a signed URL into its origin and its path with query, exactly as signed. `new URL` would
 * remove `.` and `..` segments of a key, and S3 would then see another path than the signed one.
 */
function splitSignedUrl(signedUrl: string): { origin: URL; pathAndQuery: string } {
  const authorityStart = signedUrl.indexOf('//') + 2;
  const pathStart = signedUrl.indexOf('/', authorityStart);
  return {
    origin: new URL(signedUrl.slice(0, pathStart)),
    pathAndQuery: signedUrl.slice(pathStart),
  };
}

/** Parse a Retry-After header, in seconds or as an HTTP date. */
function retryAfterDate(header: string | undefined): Date | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  const seconds = Number(header);
  const time = Number.isFinite(seconds) ? Date.now() + seconds * 1000 : Date.parse(header);
  return Number.isNaN(time) ? undefined : new Date(time);
}
