import { createHash, createHmac } from 'node:crypto';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { createS3Client } from '../src/storage/s3-client';
import { createUrlSigner } from '../src/storage/url-signer';

export interface SigningResult {
  /** Nanoseconds per operation, median of the rounds. */
  sdkNs: number;
  coldNs: number;
  floorNs: number;
  warmNs: number;
  rounds: number;
  iterations: Record<string, number>;
}

// Signing needs no network; the client is never sent a request.
const credentials = {
  accessKeyId: 'AKIDEXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

async function timeAsync(
  iterations: number,
  run: (i: number) => Promise<unknown>,
): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i += 1) await run(i);
  return Number(process.hrtime.bigint() - start) / iterations;
}

function timeSync(iterations: number, run: (i: number) => unknown): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i += 1) run(i);
  return Number(process.hrtime.bigint() - start) / iterations;
}

/**
 * Measure one URL signature four ways in this process: the SDK's getSignedUrl, s3gate's signer
 * on a cache miss (a new key each time), the floor (one SHA-256 of a canonical request plus one
 * HMAC with a cached signing key, on node:crypto), and s3gate's signer on a cache hit.
 */
export async function benchSigning(rounds = 5): Promise<SigningResult> {
  const client = createS3Client({ region: 'eu-west-1', credentials });
  const signingDate = new Date();
  const signingKey = createHmac('sha256', 'k').update('x').digest();
  const canonicalRequest =
    'GET\n/images/AbCdEfGhIjKlMnOpQrStUv.png\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD' +
    '&X-Amz-Credential=AKIDEXAMPLE%2F20261204%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20261204T100000Z' +
    '&X-Amz-Expires=4200&X-Amz-SignedHeaders=host&x-id=GetObject\nhost:my-images.s3.eu-west-1.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD';
  const iterations = { sdk: 3000, cold: 20000, floor: 50000, warm: 200000 };
  const results = {
    sdk: [] as number[],
    cold: [] as number[],
    floor: [] as number[],
    warm: [] as number[],
  };

  for (let round = 0; round < rounds; round += 1) {
    results.sdk.push(
      await timeAsync(iterations.sdk, (i) =>
        getSignedUrl(
          client,
          new GetObjectCommand({ Bucket: 'my-images', Key: `images/sdk-${round}-${i}.png` }),
          {
            signingDate,
            expiresIn: 4200,
          },
        ),
      ),
    );

    // A fresh signer per round, warmed with one signature so the one-time self-check is not timed.
    const signer = createUrlSigner({
      client,
      bucket: 'my-images',
      windowSeconds: 3600,
      minValiditySeconds: 600,
      cacheSize: 1_000_000,
    });
    await signer.sign({ key: 'images/warm-up.png' });
    results.cold.push(
      await timeAsync(iterations.cold, (i) =>
        signer.sign({ key: `images/cold-${round}-${i}.png` }),
      ),
    );

    results.floor.push(
      timeSync(iterations.floor, (i) => {
        const hash = createHash('sha256').update(`${canonicalRequest}${i}`).digest('hex');
        return createHmac('sha256', signingKey)
          .update(`AWS4-HMAC-SHA256\n20261204T100000Z\n20261204/eu-west-1/s3/aws4_request\n${hash}`)
          .digest('hex');
      }),
    );

    const warmRequest = { key: 'images/warm-up.png' };
    results.warm.push(await timeAsync(iterations.warm, () => signer.sign(warmRequest)));
  }

  return {
    sdkNs: median(results.sdk),
    coldNs: median(results.cold),
    floorNs: median(results.floor),
    warmNs: median(results.warm),
    rounds,
    iterations,
  };
}

if (require.main === module) {
  void benchSigning().then((r) => {
    console.log(JSON.stringify(r, null, 2));
    console.log(
      `cold/floor ${(r.coldNs / r.floorNs).toFixed(2)}x, sdk/cold ${(r.sdkNs / r.coldNs).toFixed(1)}x`,
    );
  });
}
