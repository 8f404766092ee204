import type { IncomingHttpHeaders } from 'node:http';
import fresh from 'fresh';

/** The validators of the selected representation, as its ETag and Last-Modified headers carry them. */
export interface Validators {
  /** Entity-tag with its quotes, such as `"9b2cf535f27731c974343645a3985328"`, or undefined when unknown. */
  etag: string | undefined;
  /** HTTP-date, so comparisons use the header's one-second precision. */
  lastModified: string;
}

// An entity-tag: an optional weak prefix, then anything but DQUOTE between quotes (RFC 9110 §8.8.3).
const ENTITY_TAG = /(?:W\/)?"[^"]*"/g;

/** Split a list such as `W/"a", "b"` into entity-tags. A comma between quotes belongs to the tag. */
export function parseEntityTags(value: string): string[] {
  return value.match(ENTITY_TAG) ?? [];
}

/**
 * Evaluate If-Match, or If-Unmodified-Since when If-Match is absent (RFC 9110 §13.2.2, steps 1
 * and 2). Returns true when the request must fail with 412. An If-Match list cannot be evaluated
 * without the ETag, so the result is then false and the caller must send If-Match on to S3.
 */
export function isPreconditionFailed(
  headers: IncomingHttpHeaders,
  validators: Validators,
): boolean {
  const ifMatch = headers['if-match'];
  if (ifMatch !== undefined) {
    if (ifMatch.trim() === '*') return false;
    const etag = validators.etag;
    if (etag === undefined) return false;
    return !parseEntityTags(ifMatch).some((tag) => isStrongMatch(tag, etag));
  }

  const unmodifiedSince = parseHttpDate(headers['if-unmodified-since']);
  const lastModified = parseHttpDate(validators.lastModified);
  if (unmodifiedSince === undefined || lastModified === undefined) return false;
  return lastModified > unmodifiedSince;
}

/**
 * Evaluate If-None-Match, or If-Modified-Since when If-None-Match is absent (RFC 9110 §13.2.2,
 * steps 3 and 4). Returns true when a GET or HEAD gets a 304. jshttp `fresh` compares
 * entity-tags weakly, accepts lists and `*`, and ignores an invalid date. An If-None-Match list
 * other than `*` never matches an unknown ETag, so the caller must send it on to S3.
 */
export function isNotModified(headers: IncomingHttpHeaders, validators: Validators): boolean {
  // NOTE: fresh also returns false for a request with `Cache-Control: no-cache`, which browsers
  // send on a forced reload. RFC 9110 does not require that of an origin server, and the cost is
  // one full response.
  return fresh(headers, { etag: validators.etag, 'last-modified': validators.lastModified });
}

/**
 * Evaluate If-Range (RFC 9110 §13.1.5). Returns true when the Range header applies and false when
 * the full representation must be sent. An entity-tag needs a strong match, so a weak one never
 * matches. A date must equal Last-Modified exactly.
 */
export function ifRangeMatches(headers: IncomingHttpHeaders, validators: Validators): boolean {
  const header = headers['if-range'];
  if (header === undefined) return true;
  // Node keeps a repeated unknown header as an array. Two validators cannot both be current.
  if (typeof header !== 'string') return false;

  const ifRange = header.trim();

  if (ifRange.startsWith('"') || ifRange.startsWith('W/')) {
    return validators.etag !== undefined && isStrongMatch(ifRange, validators.etag);
  }

  // RFC 9110 accepts a date only when Last-Modified is strong. s3gate's objects never change after
  // upload, so their Last-Modified is as strong as an ETag.
  const date = parseHttpDate(ifRange);
  return date !== undefined && date === parseHttpDate(validators.lastModified);
}

/** Strong comparison (RFC 9110 §8.8.3.2): both tags strong and identical. */
function isStrongMatch(tag: string, etag: string): boolean {
  return !tag.startsWith('W/') && !etag.startsWith('W/') && tag === etag;
}

/** Milliseconds since the epoch, or undefined for a missing or invalid date. */
function parseHttpDate(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const time = Date.parse(value);
  return Number.isNaN(time) ? undefined : time;
}
