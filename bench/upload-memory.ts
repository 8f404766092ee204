import sharp from 'sharp';
import { rssBytes, signIn, startBenchServer, startExternalS3, upload } from './harness';

export interface UploadMemoryResult {
  fileBytes: number;
  rssBeforeBytes: number;
  rssPeakBytes: number;
  durationMs: number;
}

/**
 * One 25 MB upload through the admin handler, sampling the app's RSS every 10 ms: if the body
 * were buffered, the peak would grow by at least the file size. The S3 server runs in the
 * benchmark's process, so its buffers are not counted.
 */
export async function benchUploadMemory(): Promise<UploadMemoryResult> {
  const external = await startExternalS3();
  const server = await startBenchServer({
    IMAGE_MAX_BYTES: String(32 * 1024 * 1024),
    ...external.env,
  });
  try {
    const cookie = await signIn(server.url);
    // An uncompressed PNG: a real image whose size is close to width × height × 3.
    const file = await sharp({
      create: { width: 3000, height: 2800, channels: 3, background: '#4a7' },
    })
      .png({ compressionLevel: 0 })
      .toBuffer();
    // A small upload first, so lazily loaded code and buffers are not counted as growth.
    await upload(
      server.url,
      cookie,
      await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } })
        .png()
        .toBuffer(),
      'warm.png',
    );
    await new Promise((resolve) => setTimeout(resolve, 500));

    const rssBeforeBytes = rssBytes(server.pid);
    let rssPeakBytes = rssBeforeBytes;
    const sampler = setInterval(() => {
      rssPeakBytes = Math.max(rssPeakBytes, rssBytes(server.pid));
    }, 10);
    const started = Date.now();
    try {
      await upload(server.url, cookie, file, 'large.png');
    } finally {
      clearInterval(sampler);
    }
    rssPeakBytes = Math.max(rssPeakBytes, rssBytes(server.pid));
    return {
      fileBytes: file.length,
      rssBeforeBytes,
      rssPeakBytes,
      durationMs: Date.now() - started,
    };
  } finally {
    await server.stop();
    await external.stop();
  }
}

if (require.main === module) {
  void benchUploadMemory().then((r) => {
    console.log(JSON.stringify(r, null, 2));
  });
}
