import sharp from 'sharp';

/** Make a real image of the given format, so the upload's type sniffing sees genuine headers. */
export async function makeImage(
  format: 'png' | 'jpeg' | 'webp' | 'gif' | 'avif' = 'png',
  width = 32,
  height = 24,
  color = '#3a7',
): Promise<Buffer> {
  const image = sharp({ create: { width, height, channels: 3, background: color } });
  return image[format]().toBuffer();
}

/**
 * Make an uncompressed PNG of roughly `bytes` bytes (within a few KiB): a real image header
 * followed by real pixel data, for size-limit tests.
 */
export async function makeLargePng(bytes: number): Promise<Buffer> {
  const width = 1024;
  const height = Math.ceil(bytes / (width * 3 + 1));
  return sharp({ create: { width, height, channels: 3, background: '#808080' } })
    .png({ compressionLevel: 0 })
    .toBuffer();
}
