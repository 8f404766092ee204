import { Transform, type TransformCallback } from 'node:stream';

/**
 * Why an image's container structure was rejected: the file stops before the image ends, bytes
 * follow the image's end, or a length or block type is impossible.
 */
export type StructureProblem = 'truncated' | 'trailing-data' | 'malformed';

/** Thrown by `ImageEndTracker` for a file that is not one complete image. */
export class ImageStructureError extends Error {
  override readonly name = 'ImageStructureError';
  constructor(
    readonly problem: StructureProblem,
    detail: string,
  ) {
    super(detail);
  }
}

/**
 * Next request of a structure parser to the driver: `read` bytes to inspect, `skip` bytes of
 * data, or `scan` past JPEG entropy-coded data to the next marker (returned as one byte).
 * `endAllowed` marks a read where the file may also end: ISOBMFF has no end marker, so an AVIF
 * file ends after any complete top-level box.
 */
type Step =
  | { read: number; endAllowed?: boolean }
  | { skip: number }
  | { scan: 'jpeg-marker' }
  | { skipToEnd: true };

type Parser = Generator<Step, void, Buffer>;

/** Formats whose structure is known, by the type name that image-size reports. */
const PARSERS: Readonly<Record<string, () => Parser>> = {
  png: parsePng,
  jpg: parseJpeg,
  gif: parseGif,
  webp: parseWebp,
  avif: parseIsobmff,
};

/** Tell whether `ImageEndTracker` can check this image-size type name. */
export function hasKnownStructure(type: string): boolean {
  return Object.hasOwn(PARSERS, type);
}

/**
 * Follows the container structure of one image as its bytes stream past, without decoding the
 * pixels, to find where the image ends. It throws `ImageStructureError` as soon as a byte follows
 * that end (the classic polyglot is a valid image with an HTML page or a script appended), when a
 * structure field is impossible, and from `end()` when the file stopped early.
 *
 * NOTE: this finds appended data only. Data hidden inside the image's own blocks (a PNG text
 * chunk, a JPEG comment) passes; the stored Content-Type and `nosniff` keep browsers from running
 * it.
 */
export class ImageEndTracker {
  private readonly parser: Parser;
  private step: IteratorResult<Step, void>;
  private readonly pending: Buffer[] = [];
  private pendingLength = 0;
  private skipLeft = 0;
  /** In a JPEG scan: the previous byte was 0xFF, so the next one decides whether a marker starts. */
  private afterFf = false;
  private toEnd = false;

  constructor(type: string) {
    const create = PARSERS[type];
    if (!create) throw new TypeError(`no structure parser for image type "${type}"`);
    this.parser = create();
    this.step = this.parser.next();
    this.startStep();
  }

  /** Feed the next bytes of the file. */
  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.toEnd) return;
      if (this.step.done) {
        throw new ImageStructureError('trailing-data', 'it has data after the end of the image.');
      }
      const step = this.step.value;

      if ('skip' in step) {
        const skipped = Math.min(this.skipLeft, chunk.length - offset);
        this.skipLeft -= skipped;
        offset += skipped;
        if (this.skipLeft === 0) this.advance(Buffer.alloc(0));
        continue;
      }

      if ('scan' in step) {
        const marker = this.scanJpeg(chunk, offset);
        offset = marker.offset;
        if (marker.value !== undefined) this.advance(Buffer.of(marker.value));
        continue;
      }

      if ('read' in step) {
        const copied = Math.min(step.read - this.pendingLength, chunk.length - offset);
        this.pending.push(chunk.subarray(offset, offset + copied));
        this.pendingLength += copied;
        offset += copied;
        if (this.pendingLength === step.read) {
          const bytes = Buffer.concat(this.pending, this.pendingLength);
          this.pending.length = 0;
          this.pendingLength = 0;
          this.advance(bytes);
        }
      }
    }
  }

  /** Check that the file ended exactly where the image ends. */
  end(): void {
    if (this.step.done || this.toEnd) return;
    const step = this.step.value;
    if ('read' in step && step.endAllowed && this.pendingLength === 0) return;
    throw new ImageStructureError('truncated', 'the file ends before the image does.');
  }

  private advance(input: Buffer): void {
    try {
      this.step = this.parser.next(input);
    } catch (error) {
      if (error instanceof ImageStructureError) throw error;
      throw new ImageStructureError('malformed', 'its structure is damaged.');
    }
    this.startStep();
  }

  private startStep(): void {
    if (this.step.done) return;
    const step = this.step.value;
    if ('skip' in step) {
      this.skipLeft = step.skip;
      // A zero-length block: nothing to skip, go straight to the next step.
      if (step.skip === 0) this.advance(Buffer.alloc(0));
    } else if ('scan' in step) {
      this.afterFf = false;
    } else if ('skipToEnd' in step) {
      this.toEnd = true;
    }
  }

  /**
   * Skip entropy-coded JPEG data up to the next marker. Inside a scan, 0xFF 0x00 is an escaped
   * data byte, 0xFF 0xD0 to 0xD7 are restart markers and 0xFF 0xFF is fill. Any other byte after
   * 0xFF starts the marker that ends the scan.
   */
  private scanJpeg(chunk: Buffer, start: number): { offset: number; value?: number } {
    let offset = start;
    while (offset < chunk.length) {
      if (!this.afterFf) {
        const ff = chunk.indexOf(0xff, offset);
        if (ff === -1) return { offset: chunk.length };
        this.afterFf = true;
        offset = ff + 1;
        continue;
      }
      const byte = chunk[offset] as number;
      offset += 1;
      if (byte === 0xff) continue;
      this.afterFf = false;
      if (byte === 0x00 || (byte >= 0xd0 && byte <= 0xd7)) continue;
      return { offset, value: byte };
    }
    return { offset };
  }
}

/** PNG (RFC 2083): the signature, then chunks of length, type, data and CRC, ending with IEND. */
function* parsePng(): Parser {
  yield { skip: 8 };
  for (;;) {
    const header = yield { read: 8 };
    const length = header.readUInt32BE(0);
    const type = header.toString('latin1', 4, 8);
    if (length > 0x7fffffff || !/^[A-Za-z]{4}$/.test(type)) throw malformed();
    yield { skip: length + 4 };
    if (type === 'IEND') return;
  }
}

/**
 * JPEG (ITU T.81): segments with a 2-byte length after SOI, entropy-coded data after each SOS,
 * and EOI at the end. Stray bytes before a marker are skipped, as libjpeg does with a warning.
 */
function* parseJpeg(): Parser {
  yield { skip: 2 };
  let marker = (yield { scan: 'jpeg-marker' })[0] as number;
  for (;;) {
    if (marker === 0xd9) return;
    // A second SOI means a second image, or a damaged file.
    if (marker === 0xd8) throw malformed();
    // TEM and the restart markers stand alone, without a length.
    if (marker !== 0x01 && !(marker >= 0xd0 && marker <= 0xd7)) {
      const length = (yield { read: 2 }).readUInt16BE(0);
      if (length < 2) throw malformed();
      yield { skip: length - 2 };
    }
    marker = (yield { scan: 'jpeg-marker' })[0] as number;
  }
}

/** GIF89a: header, screen descriptor, color table, then blocks until the 0x3B trailer. */
function* parseGif(): Parser {
  const header = yield { read: 13 };
  yield { skip: colorTableBytes(header[10] as number) };
  for (;;) {
    const introducer = (yield { read: 1 })[0];
    if (introducer === 0x3b) return;
    if (introducer === 0x21) {
      // Extension: a label byte, then data sub-blocks.
      yield { skip: 1 };
      yield* gifSubBlocks();
    } else if (introducer === 0x2c) {
      // Image: descriptor, optional local color table, LZW code size, then data sub-blocks.
      const descriptor = yield { read: 9 };
      yield { skip: colorTableBytes(descriptor[8] as number) + 1 };
      yield* gifSubBlocks();
    } else {
      throw malformed();
    }
  }
}

function colorTableBytes(flags: number): number {
  return flags & 0x80 ? 3 * 2 ** ((flags & 0x07) + 1) : 0;
}

function* gifSubBlocks(): Parser {
  for (;;) {
    const size = (yield { read: 1 })[0] as number;
    if (size === 0) return;
    yield { skip: size };
  }
}

/** WebP: one RIFF chunk whose size field covers the whole rest of the file. */
function* parseWebp(): Parser {
  const header = yield { read: 12 };
  const size = header.readUInt32LE(4);
  if (size < 4) throw malformed();
  // RIFF pads a chunk of odd size with one byte.
  yield { skip: size - 4 + (size % 2) };
}

/**
 * AVIF (ISOBMFF): top-level boxes of size and type, up to the end of the file. A box of size 0
 * runs to the end of the file; size 1 means a 64-bit size follows the type.
 */
function* parseIsobmff(): Parser {
  for (;;) {
    const header = yield { read: 8, endAllowed: true };
    const type = header.toString('latin1', 4, 8);
    if (!/^[\x20-\x7e]{4}$/.test(type)) throw malformed();
    const size = header.readUInt32BE(0);
    if (size === 0) {
      yield { skipToEnd: true };
      return;
    }
    let headerBytes = 8;
    let boxBytes = size;
    if (size === 1) {
      const large = (yield { read: 8 }).readBigUInt64BE(0);
      if (large > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed();
      headerBytes = 16;
      boxBytes = Number(large);
    }
    if (boxBytes < headerBytes) throw malformed();
    yield { skip: boxBytes - headerBytes };
  }
}

function malformed(): ImageStructureError {
  return new ImageStructureError('malformed', 'its structure is damaged.');
}

/**
 * Create a pass-through stream that checks one image's structure on the way. It fails with an
 * `ImageStructureError` as soon as data follows the end of the image, and at its own end when the
 * image was cut short, so the failure reaches the S3 upload before the upload completes.
 */
export function createImageEndCheck(type: string): Transform {
  const tracker = new ImageEndTracker(type);
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      try {
        tracker.push(chunk);
      } catch (error) {
        callback(error as Error);
        return;
      }
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      try {
        tracker.end();
      } catch (error) {
        callback(error as Error);
        return;
      }
      callback();
    },
  });
}
