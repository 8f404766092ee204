import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import autocannon from 'autocannon';
import sharp from 'sharp';
import { EMBEDDED_S3_CREDENTIALS } from '../src/storage/embedded-s3';
import { createS3Client } from '../src/storage/s3-client';
import {
  cpuSeconds,
  median,
  rssBytes,
  setCpuAffinity,
  signIn,
  startBenchServer,
  startExternalS3,
  upload,
} from './harness';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Load figures of one path, over all its runs under one CPU placement. */
export interface PathLoad {
  requestsPerSecond: number;
  megabytesPerSecond: number;
  p99Ms: number;
  /** CPU time of the app process (user and system, all threads) per request, in ms. */
  appCpuMsPerRequest: number;
  non2xx: number;
  /** Socket errors and timeouts. */
  errors: number;
}

/** Proxy mode against direct reads, under one CPU placement. */
export interface PathComparison {
  proxy: PathLoad;
  direct: PathLoad;
  /** Proxy req/s divided by direct req/s, round by round: the spread of the ratio. */
  roundRatios: number[];
}

export interface ProxyResult {
  objects: number;
  objectBytes: number;
  secondsPerRun: number;
  connections: number;
  /**
   * The app on CPU 1, and the S3 server with the load generator on CPU 0. Undefined when the
   * processes could not be pinned (no taskset, or CPUs 0 and 1 not both available).
   */
  pinned: PathComparison | undefined;
  /** Both processes free to run on any CPU, placed by the kernel's scheduler. */
  unpinned: PathComparison;
  /**
   * Proxy mode against a route that reads each object with the SDK's GetObject and pipes it to
   * the response, measured after the RSS figure, pinned when pinning works.
   */
  sdkBaseline: {
    pinned: boolean;
    proxy: PathLoad;
    sdkProxy: PathLoad;
    /** SDK route's app CPU per request divided by proxy mode's, round by round. */
    roundCpuRatios: number[];
  };
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

/**
 * Run two paths one after the other, the first one first in even rounds and last in odd ones, so
 * that neither always meets the machine in the same state.
 */
async function runPair(
  round: number,
  first: () => Promise<unknown>,
  second: () => Promise<unknown>,
): Promise<void> {
  const [earlier, later] = round % 2 === 0 ? [first, second] : [second, first];
  await earlier();
  await later();
}

/** An autocannon run with the CPU time that the app process used during it. */
type Run = autocannon.Result & { appCpuSeconds: number };

/**
 * 1 MiB objects through proxy mode against the same objects straight from the same S3 server,
 * alternating in rounds of runs bounded in time. The S3 server runs in this process and the app
 * in its own, as a separate S3 endpoint would be. RSS of the app before and after all proxied
 * requests (10,000 by default).
 *
 * Both paths compete for the same two cores, so a slow phase of the machine can sink one run.
 * Many short runs, with the order swapped every round, spread such phases over both paths.
 *
 * Each round runs both paths twice: once with the app pinned to CPU 1 and this process to CPU 0,
 * and once with both free. Unpinned, the proxy path has three busy threads on two cores (the
 * load generator with the S3 server, the app, and S3's file reads). In runs on a 2-core machine,
 * unpinned round ratios swung between 0.63 and 0.92, likely with where the scheduler put those
 * threads, while pinned ones stayed between 0.90 and 1.02. Pinned, the app has a core of its own,
 * as it would beside a remote S3. The direct path then runs on one core too, and the record shows
 * its req/s under both placements.
 *
 * Last, proxy mode alternates with the SDK proxy route of the bench server, to compare the app's
 * CPU time per image when it reads with GetObject.
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

    const run = async (urls: string[], withCookie: boolean): Promise<Run> => {
      const cpuBefore = cpuSeconds(server.pid);
      const result = await autocannon({
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
      return { ...result, appCpuSeconds: cpuSeconds(server.pid) - cpuBefore };
    };

    const proxyUrls = ids.map((id) => `${server.url}/image/${id}`);
    const allCpus = `0-${os.availableParallelism() - 1}`;
    const place = (pinned: boolean) =>
      pinned
        ? setCpuAffinity(server.pid, '1') && setCpuAffinity(process.pid, '0')
        : setCpuAffinity(server.pid, allCpus) && setCpuAffinity(process.pid, allCpus);
    const canPin = os.availableParallelism() >= 2 && place(true) && place(false);

    const warmUp = await run(proxyUrls, true); // also counted in RSS below
    const rssBeforeBytes = rssBytes(server.pid);
    const runs = {
      pinned: { proxy: [] as Run[], direct: [] as Run[] },
      unpinned: { proxy: [] as Run[], direct: [] as Run[] },
    };
    for (let round = 0; round < rounds; round += 1) {
      const placements = canPin ? [true, false] : [false];
      if (round % 2 === 1) placements.reverse();
      for (const pinned of placements) {
        if (canPin) place(pinned);
        const target = pinned ? runs.pinned : runs.unpinned;
        await runPair(
          round,
          async () => target.proxy.push(await run(proxyUrls, true)),
          async () => target.direct.push(await run(directUrls, false)),
        );
      }
    }
    // Top up to the stated number of proxied requests for the RSS figure.
    const proxiedSoFar = [warmUp, ...runs.pinned.proxy, ...runs.unpinned.proxy].reduce(
      (sum, r) => sum + r.requests.total,
      0,
    );
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

    // After the RSS figure, so that the SDK route's memory does not count in it.
    const sdkProxyUrls = ids.map((id) => `${server.url}/bench/sdk-proxy/${id}`);
    if (canPin) place(true);
    const sdkRuns = { proxy: [] as Run[], sdkProxy: [] as Run[] };
    for (let round = 0; round < rounds; round += 1) {
      await runPair(
        round,
        async () => sdkRuns.proxy.push(await run(proxyUrls, true)),
        async () => sdkRuns.sdkProxy.push(await run(sdkProxyUrls, true)),
      );
    }

    const rate = (r: autocannon.Result) => r.requests.total / r.duration;
    const cpuPerRequest = (r: Run) => r.appCpuSeconds / Math.max(1, r.requests.total);
    // Rates and app CPU are the median run's. p99 is the worst run's, and counts are totals.
    const combine = (results: Run[]): PathLoad => {
      const requestsPerSecond = median(results.map(rate));
      return {
        requestsPerSecond,
        megabytesPerSecond: (requestsPerSecond * objectBytes) / 1e6,
        p99Ms: Math.max(...results.map((r) => r.latency.p99)),
        appCpuMsPerRequest: median(results.map(cpuPerRequest)) * 1000,
        non2xx: results.reduce((sum, r) => sum + r.non2xx, 0),
        errors: results.reduce((sum, r) => sum + r.errors + r.timeouts, 0),
      };
    };

    const compare = (paths: typeof runs.pinned): PathComparison => ({
      proxy: combine(paths.proxy),
      direct: combine(paths.direct),
      roundRatios: paths.proxy.map((r, round) => {
        const direct = paths.direct[round];
        return direct ? rate(r) / rate(direct) : NaN;
      }),
    });

    return {
      objects: ids.length,
      objectBytes,
      secondsPerRun,
      connections,
      pinned: canPin ? compare(runs.pinned) : undefined,
      unpinned: compare(runs.unpinned),
      sdkBaseline: {
        pinned: canPin,
        proxy: combine(sdkRuns.proxy),
        sdkProxy: combine(sdkRuns.sdkProxy),
        roundCpuRatios: sdkRuns.proxy.map((r, round) => {
          const sdk = sdkRuns.sdkProxy[round];
          return sdk ? cpuPerRequest(sdk) / cpuPerRequest(r) : NaN;
        }),
      },
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
