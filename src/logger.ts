import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Paths that never reach the log: cookies, credentials, and the signed query string of
 * presigned URLs (its signature is a bearer token for the object until it expires).
 */
export const REDACTED_PATHS = [
  'req.headers.cookie',
  'req.headers.authorization',
  'req.headers["x-csrf-token"]',
  'res.headers["set-cookie"]',
  'res.headers.location',
  'password',
  '*.password',
  'secretAccessKey',
  '*.secretAccessKey',
  'sessionToken',
  '*.sessionToken',
  // S3's SignatureDoesNotMatch error contains the access key id and the request it expected to
  // be signed, and the SDK copies those fields onto the error object that gets logged.
  '*.AWSAccessKeyId',
  '*.StringToSign',
  '*.StringToSignBytes',
  '*.CanonicalRequest',
  '*.CanonicalRequestBytes',
  '*.SignatureProvided',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: 's3gate' },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}

/** Remove the query string of a URL, which for a presigned URL contains the signature. */
export function withoutQuery(url: string): string {
  const at = url.indexOf('?');
  return at === -1 ? url : `${url.slice(0, at)}?[redacted]`;
}
