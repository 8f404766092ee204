import parseRange from 'range-parser';

/** The part of a representation that a GET returns, after reading its Range header. */
export type RangeSelection =
  | { kind: 'full' }
  /** Zero-based, inclusive byte offsets, as in `Content-Range`. */
  | { kind: 'partial'; start: number; end: number }
  | { kind: 'unsatisfiable' };

const FULL: RangeSelection = { kind: 'full' };
const UNSATISFIABLE: RangeSelection = { kind: 'unsatisfiable' };

// One `first-last` range-spec with both bounds, for telling an inverted range from one past the end.
const CLOSED_BYTE_RANGE = /^\s*bytes\s*=\s*(\d+)\s*-\s*(\d+)\s*$/i;

/**
 * Select the bytes a GET returns for a `Range` header (RFC 9110 §14.2), given the representation's
 * size. A missing header, another unit, a malformed header or more than one range selects the
 * full representation, because a server may ignore Range. A single range that starts at or past
 * the end, or a zero-length suffix, is unsatisfiable (416).
 */
export function selectRange(header: string | undefined, sizeBytes: number): RangeSelection {
  if (header === undefined) return FULL;

  // S3's GetObject takes one range, so a multipart/byteranges answer would mean several reads.
  // Checked before parsing because range-parser silently drops the unsatisfiable parts of a list.
  if (header.includes(',')) return FULL;

  const ranges = parseRange(sizeBytes, header);
  if (ranges === -2) return FULL;
  if (ranges === -1) return hasInvertedBounds(header) ? FULL : UNSATISFIABLE;
  if (ranges.type.toLowerCase() !== 'bytes') return FULL;

  const range = ranges[0];
  if (!range) return UNSATISFIABLE;
  return { kind: 'partial', start: range.start, end: range.end };
}

/**
 * Tell whether the header is `bytes=first-last` with last < first. RFC 9110 §14.1.1 calls that
 * range-spec invalid, so it is ignored. range-parser reports it as unsatisfiable instead.
 */
function hasInvertedBounds(header: string): boolean {
  const match = CLOSED_BYTE_RANGE.exec(header);
  if (!match?.[1] || !match[2]) return false;
  return Number(match[2]) < Number(match[1]);
}
