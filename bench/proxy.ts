import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import autocannon from 'autocannon';
import sharp from 'sharp';
import { EMBEDDED_S3_CREDENTIALS } from '../src/storage/embedded-s3';
import { createS3Client } from '../src/storage/s3-client';
import { median, rssBytes, signIn, startBenchServer, startExternalS3, upload } from './harness';
import fs from 'node:fs';
import path from 'node:path';

export interface ProxyResult {
  objects: number;
  objectBytes: number;
  secondsPerRun: number;
  connections: number;
  proxy: {
    requestsPerSecond: number;
    megabytesPerSecond: number;
    p99Ms: number;
    non2xx: number;
    errors: number;
  };
  direct: {
    requestsPerSecond: number;
    megabytesPerSecond: number;
    p99Ms: number;
    non2xx: number;
    errors: number;
  };
  /** Proxy req/s divided by direct req/s, round by round: the spread of the ratio. */
  roundRatios: number[];
  rssBeforeBytes: number;
  rssAfterBytes: number;
  proxiedRequests: number;
}

/** A real 1 MiB-ish PNG: uncompressed pixels, so its size is known and it decodes. */
async function makeObject(seed: number): Promise<Buffer> {
  return sharp({
    create: { width: 582, height: 600, channels: 3, background: { r: seed % 256, g: 90, b: 160 } },
  })
    .png({ compressionLevel: 0 })
    .toBuffer();
}

function summarize(result: autocannon.Result, bytes: number) {
  return {
    requestsPerSecond: result.requests.average,
    megabytesPerSecond: (result.requests.average * bytes) / 1e6,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

/**
 * 1 MiB objects through proxy mode against the same objects straight from the same S3 server,
 * alternating in rounds of runs bounded in time. The S3 server runs in this process and the app
 * in its own, as a separate S3 endpoint would be. RSS of the app before and after all proxied
 * requests (10,000 by default).
 *
 * Both paths compete for the same two cores, so a slow phase of the machine can sink one run.
 * Many short runs, with the order swapped every round, spread such phases over both paths.
 */
export async function benchProxy(
  secondsPerRun = 5,
  rounds = 5,
  connections = 16,
): Promise<ProxyResult> {
  const external = await startExternalS3();
  const { s3, directory } = external;
  const server = await startBenchServer({ DELIVERY_MODE: 'proxy', ...external.env });
  try {
    const cookie = await signIn(server.url);
    const client = createS3Client({
      region: 'us-east-1',
      endpoint: s3.endpoint,
      forcePathStyle: true,
      credentials: EMBEDDED_S3_CREDENTIALS,
    });
    const ids: string[] = [];
    const directUrls: string[] = [];
    let objectBytes = 0;
    for (let i = 0; i < 8; i += 1) {
      const bytes = await makeObject(i);
      objectBytes = bytes.length;
      ids.push(await upload(server.url, cookie, bytes, `large-${i}.png`));
    }
    // Sign the same objects directly, so the direct run has no app hop at all.
    const keys = fs
      .readdirSync(path.join(directory, 'bench', 'images'))
      .filter((f) => f.endsWith('._S3rver_object'))
      .map((f) => `images/${f.replace(/\._S3rver_object$/, '')}`);
    for (const key of keys) {
      directUrls.push(
        await getSignedUrl(client, new GetObjectCommand({ Bucket: 'bench', Key: key }), {
          expiresIn: 3600,
        }),
      );
    }

    const run = (urls: string[], withCookie: boolean) =>
      autocannon({
        url: urls[0] ?? '',
        connections,
        // Bounded in time: autocannon ends a run bounded by a request count only at its next
        // one-second tick, so such runs measure whole seconds.
        duration: secondsPerRun,
        requests: urls.map((u) => {
          const parsed = new URL(u);
          return {
            method: 'GET',
            path: parsed.pathname + parsed.search,
            ...(withCookie ? { headers: { cookie } } : {}),
          };
        }),
      });

    const proxyUrls = ids.map((id) => `${server.url}/image/${id}`);
    const warmUp = await run(proxyUrls, true); // also counted in RSS below
    const rssBeforeBytes = rssBytes(server.pid);
    const proxyRuns: autocannon.Result[] = [];
    const directRuns: autocannon.Result[] = [];
    for (let round = 0; round < rounds; round += 1) {
      if (round % 2 === 0) {
        proxyRuns.push(await run(proxyUrls, true));
        directRuns.push(await run(directUrls, false));
      } else {
        directRuns.push(await run(directUrls, false));
        proxyRuns.push(await run(proxyUrls, true));
      }
    }
    // Top up to the stated number of proxied requests for the RSS figure.
    const proxiedSoFar = [warmUp, ...proxyRuns].reduce((sum, r) => sum + r.requests.total, 0);
    const remaining = Math.max(0, 10_000 - proxiedSoFar);
    if (remaining > 0) {
      await autocannon({
        url: proxyUrls[0] ?? '',
        connections,
        amount: remaining,
        requests: proxyUrls.map((u) => ({
          method: 'GET',
          path: new URL(u).pathname,
          headers: { cookie },
        })),
      });
    }
    const rssAfterBytes = rssBytes(server.pid);

    const rate = (r: autocannon.Result) => r.requests.total / r.duration;
    // The median run's req/s per path; p99 is the worst of the runs, and counts are totals.
    const combine = (runs: autocannon.Result[]) => {
      const first = runs[0] as autocannon.Result;
      return {
        ...first,
        requests: { ...first.requests, average: median(runs.map(rate)) },
        latency: { ...first.latency, p99: Math.max(...runs.map((r) => r.latency.p99)) },
        non2xx: runs.reduce((s, r) => s + r.non2xx, 0),
        errors: runs.reduce((s, r) => s + r.errors, 0),
        timeouts: runs.reduce((s, r) => s + r.timeouts, 0),
      };
    };

    return {
      objects: ids.length,
      objectBytes,
      secondsPerRun,
      connections,
      proxy: summarize(combine(proxyRuns), objectBytes),
      direct: summarize(combine(directRuns), objectBytes),
      roundRatios: proxyRuns.map((r, round) => {
        const direct = directRuns[round];
        return direct ? rate(r) / rate(direct) : NaN;
      }),
      rssBeforeBytes,
      rssAfterBytes,
      proxiedRequests: Math.max(10_000, proxiedSoFar),
    };
  } finally {
    await server.stop();
    await external.stop();
  }
}

if (require.main === module) {
  void benchProxy().then((r) => {
    console.log(JSON.stringify(r, null, 2));
  });
}
