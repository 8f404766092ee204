import fc from 'fast-check';
import sharp from 'sharp';
import {
  ImageEndTracker,
  ImageStructureError,
  type StructureProblem,
} from '../../src/images/image-structure';

/** image-size's type names, which the tracker is keyed by. */
type TypeName = 'png' | 'jpg' | 'gif' | 'webp' | 'avif';

interface Sample {
  name: string;
  type: TypeName;
  bytes: Buffer;
}

// Random noise makes real entropy-coded data, with many 0xFF bytes inside JPEG scans.
const NOISE = {
  create: {
    width: 160,
    height: 120,
    channels: 3 as const,
    background: '#808080',
    noise: { type: 'gaussian' as const, mean: 128, sigma: 60 },
  },
};

let samples: Sample[];

beforeAll(async () => {
  const frames = [
    await sharp(NOISE).png().toBuffer(),
    await sharp({ create: { width: 160, height: 120, channels: 3, background: '#f00' } })
      .png()
      .toBuffer(),
  ];
  samples = [
    { name: 'PNG', type: 'png', bytes: await sharp(NOISE).png().toBuffer() },
    { name: 'baseline JPEG', type: 'jpg', bytes: await sharp(NOISE).jpeg().toBuffer() },
    {
      name: 'progressive JPEG',
      type: 'jpg',
      bytes: await sharp(NOISE).jpeg({ progressive: true }).toBuffer(),
    },
    {
      name: 'JPEG with EXIF',
      type: 'jpg',
      bytes: await sharp(NOISE)
        .withExif({ IFD0: { Copyright: 'test' } })
        .jpeg()
        .toBuffer(),
    },
    { name: 'GIF', type: 'gif', bytes: await sharp(NOISE).gif().toBuffer() },
    {
      name: 'animated GIF',
      type: 'gif',
      bytes: await sharp(frames, { join: { animated: true } })
        .gif()
        .toBuffer(),
    },
    { name: 'lossy WebP', type: 'webp', bytes: await sharp(NOISE).webp().toBuffer() },
    {
      name: 'lossless WebP',
      type: 'webp',
      bytes: await sharp(NOISE).webp({ lossless: true }).toBuffer(),
    },
    {
      name: 'animated WebP',
      type: 'webp',
      bytes: await sharp(frames, { join: { animated: true } })
        .webp()
        .toBuffer(),
    },
    { name: 'AVIF', type: 'avif', bytes: await sharp(NOISE).avif().toBuffer() },
  ];
});

/** Feed `bytes` to a new tracker in chunks cut at `cuts`; returns the problem found, if any. */
function check(type: TypeName, bytes: Buffer, cuts: number[] = []): StructureProblem | undefined {
  const tracker = new ImageEndTracker(type);
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  try {
    let start = 0;
    for (const point of [...points, bytes.length]) {
      tracker.push(bytes.subarray(start, point));
      start = point;
    }
    tracker.end();
    return undefined;
  } catch (error) {
    if (error instanceof ImageStructureError) return error.problem;
    throw error;
  }
}

describe('ImageEndTracker', () => {
  it('accepts every sample in one piece', () => {
    for (const sample of samples) {
      expect([sample.name, check(sample.type, sample.bytes)]).toEqual([sample.name, undefined]);
    }
  });

  it('accepts every sample however it is split into chunks', () => {
    for (const sample of samples) {
      fc.assert(
        fc.property(fc.array(fc.nat(), { maxLength: 30 }), (cuts) => {
          expect(check(sample.type, sample.bytes, cuts)).toBeUndefined();
        }),
        { numRuns: 50 },
      );
    }
  });

  it('rejects any data after the end of the image', () => {
    for (const sample of samples) {
      // A leading '<' makes the appended bytes an impossible AVIF box as well: its size field
      // reads as about a gigabyte.
      const suffix = fc
        .uint8Array({ minLength: 0, maxLength: 64 })
        .map((tail) => Buffer.concat([Buffer.from('<'), tail]));
      fc.assert(
        fc.property(suffix, fc.array(fc.nat(), { maxLength: 5 }), (tail, cuts) => {
          const problem = check(sample.type, Buffer.concat([sample.bytes, tail]), cuts);
          expect(problem).toBeDefined();
          if (sample.type !== 'avif') expect(problem).toBe('trailing-data');
        }),
        { numRuns: 50 },
      );
    }
  });

  it('rejects every sample cut short', () => {
    // AVIF is left out: it has no end marker, so a cut that falls between two top-level boxes
    // leaves a file whose structure is complete. The upload tests cut inside its last box.
    for (const sample of samples.filter((s) => s.type !== 'avif')) {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: sample.bytes.length - 1 }), (length) => {
          expect(check(sample.type, sample.bytes.subarray(0, length))).toBe('truncated');
        }),
        { numRuns: 100 },
      );
    }
  });

  it('rejects an AVIF cut inside its last box', () => {
    const avif = samples.find((s) => s.type === 'avif')?.bytes ?? Buffer.alloc(0);

    expect(check('avif', avif.subarray(0, avif.length - 1))).toBe('truncated');
  });

  it('never throws anything but ImageStructureError on random bytes', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<TypeName>('png', 'jpg', 'gif', 'webp', 'avif'),
        fc.uint8Array({ maxLength: 2048 }),
        fc.array(fc.nat(), { maxLength: 5 }),
        (type, bytes, cuts) => {
          // check() rethrows anything that is not an ImageStructureError.
          check(type, Buffer.from(bytes), cuts);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('rejects a PNG chunk with an impossible type', () => {
    const png = samples[0]?.bytes ?? Buffer.alloc(0);
    const damaged = Buffer.from(png);
    damaged.write('1234', 12, 'latin1');

    expect(check('png', damaged)).toBe('malformed');
  });
});
