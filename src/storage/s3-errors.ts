import { errors, isHttpError, type HttpError } from '../errors';

/**
 * The kind of S3 call that failed. A missing key is the client's 404 only on a read. On a write it
 * is a storage failure.
 */
export type S3Operation = 'read' | 'write';

// Socket errors from Node: S3 refused or dropped the connection, so a retry soon may succeed.
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT']);

// TimeoutError comes from the SDK's HTTP handler. RequestTimeout is S3's own 400 for a stalled body.
const TIMEOUT_NAMES = new Set(['TimeoutError', 'RequestTimeout']);

// AWS and S3-compatible stores use several names for throttling. The SDK also flags it in $retryable.
export const THROTTLING_NAMES: ReadonlySet<string> = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'ServiceUnavailable',
]);

const NOT_FOUND_NAMES = new Set(['NoSuchKey', 'NotFound']);

// S3's message on a 403 AccessDenied for a presigned request that expired or is not valid yet,
// which means a wrong clock or lifetime in s3gate, not a missing key.
export const SIGNING_TIME_MESSAGE = /request has expired|not yet valid/i;

// 403 codes caused by s3gate's credentials or clock. They must not pass for a missing key.
const CREDENTIAL_ERROR_NAMES = new Set([
  'SignatureDoesNotMatch',
  'InvalidAccessKeyId',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'RequestTimeTooSkewed',
  'AccountProblem',
  'AllAccessDisabled',
]);

/** The parts of an SDK, Node socket or stream error that decide its status. */
interface ErrorFields {
  /** SDK error name (S3's error code), or the Error's name. */
  name: string | undefined;
  /** Node's system or stream error code, such as ECONNREFUSED. */
  code: string | undefined;
  /** HTTP status of S3's response, when S3 responded. */
  status: number | undefined;
  /** The error's message, which contains S3's own message. */
  message: string;
  /** Set by the object reader when S3 rejected the signing time of a presigned read. */
  signingTimeRejected: boolean;
  throttling: boolean;
  /** Object size that S3 reports with InvalidRange. */
  actualObjectSize: number | undefined;
}

/**
 * Translate an error from an S3 call, or from streaming its body, into an error of the catalogue.
 * The original error is kept as `cause`, for the log. An error that is already an HttpError is
 * returned as it is.
 *
 * - 304 from S3 (the SDK throws for it): `errors.notModified()`, status 304.
 * - Client gone (abort signal, or the response closed during `pipeline`): 499.
 * - Connection refused, reset or unreachable, or throttling: 503 with Retry-After.
 * - Timeouts of the SDK's HTTP handler, ETIMEDOUT, S3's RequestTimeout: 504.
 * - On a read, NoSuchKey, NotFound, a 404, or a 403 not caused by the credentials or the signing
 *   time: 404.
 * - InvalidRange: 416. PreconditionFailed: 412. Anything else: 502.
 */
export function translateS3Error(error: unknown, operation: S3Operation = 'read'): HttpError {
  if (isHttpError(error)) return error;

  const translated = classify(readErrorFields(error), operation);
  translated.cause = error;
  return translated;
}

function classify(fields: ErrorFields, operation: S3Operation): HttpError {
  const name = fields.name ?? '';
  const code = fields.code ?? '';

  // S3 responded 304 to a conditional read
  if (fields.status === 304) return errors.notModified();

  // Client gone
  if (name === 'AbortError' || code === 'ERR_STREAM_PREMATURE_CLOSE') {
    return errors.clientClosedRequest();
  }

  // Socket codes come before names: the SDK's Node handler renames ECONNRESET and EPIPE errors to
  // TimeoutError (@smithy/node-http-handler 4.14), but a reset is not a timeout.
  if (UNAVAILABLE_CODES.has(code)) return errors.storageUnavailable();
  if (TIMEOUT_CODES.has(code) || TIMEOUT_NAMES.has(name)) return errors.storageTimeout();

  // Throttling
  if (fields.throttling || THROTTLING_NAMES.has(name)) return errors.storageUnavailable();
  if (fields.status === 503 || fields.status === 429) return errors.storageUnavailable();

  if (
    operation === 'read' &&
    !fields.signingTimeRejected &&
    isMissingKey(name, fields.status, fields.message)
  ) {
    return errors.imageNotFound();
  }
  if (name === 'InvalidRange' || fields.status === 416) {
    return errors.rangeNotSatisfiable(fields.actualObjectSize);
  }
  if (name === 'PreconditionFailed' || fields.status === 412) return errors.preconditionFailed();
  return errors.storageFailed();
}

/**
 * Tell whether S3 reports the key as missing. Without s3:ListBucket permission S3 returns 403
 * AccessDenied for a missing key, so a 403 counts unless its code blames the credentials.
 * HeadObject's 403 has no body and no code, so on HEAD a signature error also becomes a 404; the
 * `cause` keeps the original for the log.
 */
function isMissingKey(name: string, status: number | undefined, message: string): boolean {
  if (NOT_FOUND_NAMES.has(name)) return true;
  // NoSuchBucket is a configuration error, not a missing image.
  if (status === 404) return name !== 'NoSuchBucket';
  if (status === 403) {
    return !CREDENTIAL_ERROR_NAMES.has(name) && !SIGNING_TIME_MESSAGE.test(message);
  }
  return false;
}

function readErrorFields(error: unknown): ErrorFields {
  const fields: ErrorFields = {
    name: undefined,
    code: undefined,
    status: undefined,
    message: '',
    signingTimeRejected: false,
    throttling: false,
    actualObjectSize: undefined,
  };
  if (typeof error !== 'object' || error === null) return fields;

  const record = error as Record<string, unknown>;
  const metadata = asRecord(record.$metadata);
  const retryable = asRecord(record.$retryable);
  const sizeField = record.ActualObjectSize;
  const actualObjectSize =
    typeof sizeField === 'number' || typeof sizeField === 'string' ? Number(sizeField) : Number.NaN;

  fields.name = asString(record.name) ?? asString(record.Code);
  fields.message = asString(record.message) ?? '';
  fields.signingTimeRejected = record.signingTimeRejected === true;
  fields.code = asString(record.code) ?? codeInWrapperMessage(fields.message);
  fields.status =
    typeof metadata?.httpStatusCode === 'number' ? metadata.httpStatusCode : undefined;
  fields.throttling = retryable?.throttling === true;
  fields.actualObjectSize = Number.isSafeInteger(actualObjectSize) ? actualObjectSize : undefined;
  return fields;
}

/**
 * Recover the Node error code from the SDK's retry wrapper. The retry middleware
 * (@smithy/core 3) replaces an error that fails its `instanceof Error` check, such as a socket
 * error from another JavaScript realm under Jest, with a new Error whose message is the only
 * trace left: "AWS SDK error wrapper for Error: connect ECONNREFUSED 127.0.0.1:9".
 */
function codeInWrapperMessage(message: string | undefined): string | undefined {
  if (!message?.startsWith('AWS SDK error wrapper for ')) return undefined;
  return /\b(E[A-Z_]{3,})\b/.exec(message)?.[1];
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null
    ? (value as Record<string, unknown>)
    : undefined;
}

function asString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
