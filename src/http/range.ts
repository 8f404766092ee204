import parseRange from 'range-parser';

/** The part of a representation that a GET returns, after reading its Range header. */
export type RangeSelection =
  | { kind: 'full' }
  /** Zero-based, inclusive byte offsets, as in `Content-Range`. */
  | { kind: 'partial'; start: number; end: number }
  | { kind: 'unsatisfiable' };

const FULL: RangeSelection = { kind: 'full' };
const UNSATISFIABLE: RangeSelection = { kind: 'unsatisfiable' };

const BYTES_UNIT = /^\s*bytes\s*=/i;
const CLOSED_BYTE_RANGE = /^\s*bytes\s*=\s*(\d+)\s*-\s*(\d+)\s*$/i;
const SUFFIX_BYTE_RANGE = /^\s*bytes\s*=\s*-\s*(\d+)\s*$/i;

/**
 * Select the bytes a GET returns for a `Range` header (RFC 9110 §14.2), given the representation's
 * size. A missing header, another unit, a malformed header or more than one range selects the
 * full representation, because a server may ignore Range. A single range that starts at or past
 * the end, a zero-length suffix, or any range of an empty representation is unsatisfiable (416).
 */
export function selectRange(header: string | undefined, sizeBytes: number): RangeSelection {
  if (header === undefined || !BYTES_UNIT.test(header)) return FULL;

  // S3's GetObject takes one range, so a multipart/byteranges response would need several reads.
  // Checked before parsing because range-parser silently drops the unsatisfiable parts of a list.
  if (header.includes(',')) return FULL;

  const ranges = parseRange(sizeBytes, header);
  if (ranges === -2) return FULL;
  if (ranges === -1) return reviewUnsatisfiable(header, sizeBytes);

  const range = ranges[0];
  if (!range) return UNSATISFIABLE;
  return { kind: 'partial', start: range.start, end: range.end };
}

/**
 * Correct two cases that range-parser 1.3 reports as unsatisfiable. RFC 9110 §14.1.1 calls
 * `bytes=first-last` with last < first invalid, so the header is ignored. A suffix longer than
 * the representation selects all of it (§14.1.2).
 */
function reviewUnsatisfiable(header: string, sizeBytes: number): RangeSelection {
  const closed = CLOSED_BYTE_RANGE.exec(header);
  if (closed?.[1] && closed[2] && Number(closed[2]) < Number(closed[1])) return FULL;

  const suffix = SUFFIX_BYTE_RANGE.exec(header);
  if (suffix?.[1] && Number(suffix[1]) > 0 && sizeBytes > 0) {
    return { kind: 'partial', start: 0, end: sizeBytes - 1 };
  }
  return UNSATISFIABLE;
}
