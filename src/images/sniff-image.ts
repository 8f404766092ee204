import { imageSize } from 'image-size';

/** Raster types accepted by default, keyed by the name image-size reports. SVG is left out on purpose: it can carry script. */
export const DEFAULT_ACCEPTED_TYPES: Readonly<
  Record<string, { contentType: string; extension: string }>
> = {
  jpg: { contentType: 'image/jpeg', extension: 'jpg' },
  png: { contentType: 'image/png', extension: 'png' },
  gif: { contentType: 'image/gif', extension: 'gif' },
  webp: { contentType: 'image/webp', extension: 'webp' },
  avif: { contentType: 'image/avif', extension: 'avif' },
};

/** Bytes read before giving up on finding the dimensions; JPEG EXIF blocks can push them far in. */
export const MAX_SNIFF_BYTES = 512 * 1024;

export interface SniffedImage {
  /** image-size's name for the type, such as png or jpg. */
  type: string;
  contentType: string;
  extension: string;
  width: number;
  height: number;
}

/**
 * Identify an image from its first bytes, ignoring whatever type the browser declared.
 * Returns undefined when these bytes are not (yet) a complete header of an accepted type.
 * The caller then reads more and tries again, up to MAX_SNIFF_BYTES or the end of the file.
 */
export function sniffImage(
  head: Buffer,
  accepted: Readonly<
    Record<string, { contentType: string; extension: string }>
  > = DEFAULT_ACCEPTED_TYPES,
): SniffedImage | undefined {
  let result: ReturnType<typeof imageSize>;
  try {
    result = imageSize(head);
  } catch {
    // image-size throws both for "not an image" and for "header cut short"; more bytes may help.
    return undefined;
  }
  const type = result.type === undefined ? undefined : accepted[result.type];
  if (!type || result.type === undefined || !(result.width > 0) || !(result.height > 0)) {
    return undefined;
  }
  return { ...type, type: result.type, width: result.width, height: result.height };
}

/** Human names of the accepted types, for error messages. */
export function describeAcceptedTypes(
  accepted: Readonly<
    Record<string, { contentType: string; extension: string }>
  > = DEFAULT_ACCEPTED_TYPES,
): string[] {
  return Object.values(accepted).map((t) => t.contentType);
}
