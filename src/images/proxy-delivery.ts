import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { create as createContentDisposition } from 'content-disposition';
import type { Request, Response } from 'express';
import { errors, type HttpError } from '../errors';
import {
  ifRangeMatches,
  isNotModified,
  isPreconditionFailed,
  type Validators,
} from '../http/conditional';
import { selectRange, type RangeSelection } from '../http/range';
import { checkFunction, checkInteger, checkNonEmptyString, checkS3Client } from '../option-checks';
import {
  createObjectReader,
  type ObjectReadRequest,
  type ObjectReadResult,
} from '../storage/object-reader';
import { translateS3Error } from '../storage/s3-errors';
import type { ImageRecord } from './image-repository';
import type { ProxyDelivery } from './image-router';

/** The log methods that proxy delivery calls; a pino logger fits. */
export interface ProxyLogger {
  warn(details: object, message: string): void;
  error(details: object, message: string): void;
}

/** Options of `createProxyDelivery`. */
export interface ProxyDeliveryOptions {
  /**
   * Client whose credentials sign the reads, such as one from `createS3Client`. Its HTTP
   * handler sends them, so its timeouts and socket pool bound every read, and its retry strategy
   * decides retries. It needs s3:GetObject on the keys.
   */
  client: S3Client;
  /** Bucket that contains the images' keys. */
  bucket: string;
  /**
   * `max-age` in seconds of the `Cache-Control: private, max-age=N, immutable` header on 200,
   * 206 and 304 responses. s3gate uses 31536000 (one year).
   */
  cacheMaxAgeSeconds: number;
  /**
   * Logger for failures of the body stream, which happen after the headers are sent and so never
   * reach the error handler. It also gets a warning with `event: 'object_missing'` for a row whose
   * object is missing from the bucket, which the client sees as a plain 404, and one with
   * `event: 's3_clock_offset_corrected'` when S3's clock corrected the signing time. Default: no
   * logging.
   */
  logger?: ProxyLogger | undefined;
  /**
   * Called with each failed S3 read, translated by `translateS3Error`, such as to count it. S3's
   * 304 and reads cancelled because the client left are not failures. Default: ignore.
   */
  onS3Error?: ((failure: HttpError) => void) | undefined;
}

const FULL: RangeSelection = { kind: 'full' };
const FACTORY = 'createProxyDelivery';

/**
 * Create the proxy-mode delivery for `createImageRouter`: it streams the object through the app
 * and handles conditional, range and HEAD requests (RFC 9110 §13 and §14). The router has
 * already checked the session, the id and the access rule. S3 failures are thrown as catalogue
 * errors (see translateS3Error) and never leave caching headers on the error response.
 *
 * The response headers come from the `ImageRecord`, not from S3: `contentType`, `sizeBytes` (for
 * ranges), `etag` (or S3's ETag when it is null), `createdAt` (Last-Modified) and `originalName`
 * (Content-Disposition). A record that disagrees with its object gives wrong headers.
 *
 * @throws TypeError at construction for a missing or invalid option.
 */
export function createProxyDelivery(options: ProxyDeliveryOptions): ProxyDelivery {
  const { client, bucket, logger } = options;
  checkS3Client(FACTORY, 'client', client);
  checkNonEmptyString(FACTORY, 'bucket', bucket, 'Pass the name of the image bucket.');
  checkInteger(FACTORY, 'cacheMaxAgeSeconds', options.cacheMaxAgeSeconds, {
    min: 0,
    hint: 'Use the max-age of the images in seconds, such as 31536000.',
  });
  checkFunction(FACTORY, 'onS3Error', options.onS3Error, { optional: true });
  if (
    logger !== undefined &&
    (typeof logger.warn !== 'function' || typeof logger.error !== 'function')
  ) {
    throw new TypeError(
      `${FACTORY}: \`logger\` must have warn(details, message) and error(details, message) methods, such as a pino logger.`,
    );
  }
  const reader = createObjectReader({
    client,
    bucket,
    onClockOffsetCorrected: (offsetMs) => {
      logger?.warn(
        { event: 's3_clock_offset_corrected', offsetSeconds: Math.round(offsetMs / 1000) },
        "S3 rejected a read's signing time, so s3gate now signs with S3's clock from its Date header. Synchronize this machine's clock with NTP, because redirect mode cannot correct it.",
      );
    },
  });
  // Ids are never reused for other bytes, so a cached copy never needs revalidation.
  const cacheControl = `private, max-age=${options.cacheMaxAgeSeconds}, immutable`;

  return async function deliverImage(req: Request, res: Response, image: ImageRecord) {
    const method = req.method === 'HEAD' ? 'HEAD' : 'GET';
    const validators: Validators = {
      etag: toEntityTag(image.etag),
      lastModified: image.createdAt.toUTCString(),
    };

    // Preconditions
    if (isPreconditionFailed(req.headers, validators)) throw errors.preconditionFailed();

    // Conditional GET, decided from the metadata row without calling S3
    if (isNotModified(req.headers, validators)) {
      sendNotModified(res, validators, cacheControl);
      return;
    }

    // Range: RFC 9110 §14.2 defines it for GET only, so HEAD describes the full representation.
    const range = method === 'HEAD' ? FULL : selectCurrentRange(req, image.sizeBytes, validators);
    if (range.kind === 'unsatisfiable') throw errors.rangeNotSatisfiable(image.sizeBytes);

    // S3 read, cancelled when the client disconnects before S3 responds
    const cancel = new AbortController();
    const onClose = () => {
      cancel.abort();
    };
    res.once('close', onClose);
    let stored: ObjectReadResult;
    try {
      stored = await reader.read(
        { method, key: image.key, range: rangeHeader(range), ...conditionsForS3(req, validators) },
        cancel.signal,
      );
    } catch (error) {
      if (cancel.signal.aborted) return;
      const failure = translateS3Error(error);
      options.onS3Error?.(failure);
      // The row exists, so the bucket has lost its object. The client gets the same 404 as for
      // an unknown id, so this warning is the only trace an operator gets.
      if (failure.status === 404) {
        options.logger?.warn(
          { event: 'object_missing', imageId: image.id, key: image.key, err: failure.cause },
          "S3 found no object for the image's metadata row, so it returns 404. S3 also answers 403 for a missing key when s3gate lacks s3:ListBucket, and `err` has its code. If s3gate may read the key (s3:GetObject), upload the image again or delete it to remove the row.",
        );
      }
      throw failure;
    } finally {
      res.off('close', onClose);
    }

    // Conditional GET that S3 decided, for a row without an ETag
    if (stored.status === 304) {
      sendNotModified(res, { ...validators, etag: validators.etag ?? stored.etag }, cacheControl);
      return;
    }

    // Response headers
    res.status(stored.status);
    res.setHeader('Content-Type', image.contentType);
    // Left unset only if S3 sent no length. Node then falls back to chunked encoding.
    if (stored.contentLength !== undefined) res.setHeader('Content-Length', stored.contentLength);
    if (stored.contentRange !== undefined) res.setHeader('Content-Range', stored.contentRange);
    res.setHeader('Accept-Ranges', 'bytes');
    setValidatorHeaders(res, { ...validators, etag: validators.etag ?? stored.etag }, cacheControl);
    res.setHeader('Content-Disposition', contentDisposition(req, image));

    // HEAD
    if (!stored.body) {
      res.end();
      return;
    }

    // Body
    await streamBody(stored.body, res, image, { logger, onS3Error: options.onS3Error });
  };
}

/** Apply If-Range to the Range header: a stale validator turns the request into a full GET. */
function selectCurrentRange(
  req: Request,
  sizeBytes: number,
  validators: Validators,
): RangeSelection {
  const range = selectRange(req.headers.range, sizeBytes);
  if (range.kind === 'full' || ifRangeMatches(req.headers, validators)) return range;
  return FULL;
}

/**
 * Pick the entity-tag conditions that only S3 can evaluate. With the ETag in the metadata row,
 * conditional.ts has decided them already. Without it, S3 compares them with the object's ETag.
 */
function conditionsForS3(
  req: Request,
  validators: Validators,
): Pick<ObjectReadRequest, 'ifMatch' | 'ifNoneMatch'> {
  if (validators.etag !== undefined) return { ifMatch: undefined, ifNoneMatch: undefined };
  const ifMatch = req.headers['if-match']?.trim();
  return {
    ifMatch: ifMatch === '*' ? undefined : ifMatch,
    ifNoneMatch: req.headers['if-none-match'],
  };
}

function rangeHeader(range: RangeSelection): string | undefined {
  return range.kind === 'partial' ? `bytes=${range.start}-${range.end}` : undefined;
}

/**
 * Stream the S3 body to the client. `pipeline` destroys the body when the response closes early,
 * which frees its S3 socket. The headers are sent by then, so a failure can only cut the response
 * short, and it is logged here.
 */
async function streamBody(
  body: Readable,
  res: Response,
  image: ImageRecord,
  report: Pick<ProxyDeliveryOptions, 'logger' | 'onS3Error'>,
): Promise<void> {
  try {
    // NOTE: a client that reads slowly keeps its S3 socket until it has read the last byte, so
    // enough slow clients can fill the client's socket pool. Only a pause longer than the
    // client's socket timeout frees it.
    await pipeline(body, res);
  } catch (error) {
    const failure = translateS3Error(error);
    // The client disconnected. pipeline has destroyed the S3 body, so there is nothing to log.
    if (failure.status === 499) return;
    report.onS3Error?.(failure);

    const details = { err: error, imageId: image.id, key: image.key };
    const message =
      'Streaming the image from S3 failed after the headers were sent, so the response was cut short.';
    // 503 and 504 are transient storage trouble. A 502 may be a fault in s3gate or its settings.
    if (failure.status === 502) report.logger?.error(details, message);
    else report.logger?.warn(details, message);
  }
}

/**
 * Send a 304. It carries the validators and caching headers of the 200 it replaces (RFC 9110
 * §15.4.5), and no representation headers or body.
 */
function sendNotModified(res: Response, validators: Validators, cacheControl: string): void {
  res.status(304);
  setValidatorHeaders(res, validators, cacheControl);
  res.end();
}

function setValidatorHeaders(res: Response, validators: Validators, cacheControl: string): void {
  if (validators.etag !== undefined) res.setHeader('ETag', validators.etag);
  res.setHeader('Last-Modified', validators.lastModified);
  res.setHeader('Cache-Control', cacheControl);
  res.setHeader('X-Content-Type-Options', 'nosniff');
}

/** `inline` with the original name, or `attachment` for `?download` (RFC 6266, RFC 8187 names). */
function contentDisposition(req: Request, image: ImageRecord): string {
  const type = req.query.download === undefined ? 'inline' : 'attachment';
  return createContentDisposition(image.originalName === '' ? undefined : image.originalName, {
    type,
  });
}

/** Quote a stored ETag if needed: S3 returns it quoted, but a row may contain the bare hash. */
function toEntityTag(etag: string | null): string | undefined {
  if (etag === null || etag === '') return undefined;
  if (etag.startsWith('"') || etag.startsWith('W/"')) return etag;
  return `"${etag}"`;
}
