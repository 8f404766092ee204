import autocannon from 'autocannon';
import { makeImage } from '../test/helpers/images';
import { cpuSeconds, median, signIn, startBenchServer, upload } from './harness';

export interface RouteLoad {
  route: string;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  non3xx: number;
  errors: number;
  /** CPU time of the app process per request, in microseconds: what the route costs the server. */
  cpuMicrosPerRequest: number;
}

interface Sample {
  result: autocannon.Result;
  cpuMicrosPerRequest: number;
}

export interface RedirectResult {
  connections: number;
  durationSeconds: number;
  rounds: number;
  routes: {
    s3gate: RouteLoad;
    constant: RouteLoad;
    naive: RouteLoad;
    fullStack: RouteLoad;
    read: RouteLoad;
  };
  /** s3gate's req/s divided by each baseline's, round by round: the spread of the ratios. */
  roundRatios: { constant: number[]; naive: number[] };
}

async function load(
  url: string,
  cookie: string,
  connections: number,
  duration: number,
): Promise<autocannon.Result> {
  return autocannon({
    url,
    connections,
    duration,
    headers: { cookie },
    maxRedirects: 0,
  } as autocannon.Options);
}

/**
 * autocannon against routes of one app process: s3gate's /image/:id (warm), and behind the same
 * session reader the constant 302 ceiling and the naive getSignedUrl route. A fourth route, the
 * constant 302 behind express-session and passport as the app's pages are, shows what the
 * reader saves. Rounds alternate the routes in a rotating order, so drift on a noisy machine
 * hits all of them alike.
 */
export async function benchRedirect(
  rounds = 6,
  durationSeconds = 6,
  connections = 32,
): Promise<RedirectResult> {
  const server = await startBenchServer();
  try {
    const cookie = await signIn(server.url);
    const id = await upload(server.url, cookie, await makeImage('png', 64, 64), 'bench.png');
    const targets = {
      s3gate: `${server.url}/image/${id}`,
      constant: `${server.url}/bench/constant`,
      naive: `${server.url}/bench/naive/${id}`,
      fullStack: `${server.url}/bench/full/constant`,
      read: `${server.url}/bench/read/${id}`,
    };
    // Warm-up: JIT, the signed-URL memo and the SQLite page cache.
    for (const target of Object.values(targets)) await load(target, cookie, connections, 2);

    const samples: Record<keyof typeof targets, Sample[]> = {
      s3gate: [],
      constant: [],
      naive: [],
      fullStack: [],
      read: [],
    };
    const names = Object.keys(targets) as (keyof typeof targets)[];
    for (let round = 0; round < rounds; round += 1) {
      // Rotate the order each round, so a drift of the machine's speed reaches every route.
      for (let i = 0; i < names.length; i += 1) {
        const name = names[(round + i) % names.length] as keyof typeof targets;
        // A route that runs right after the naive one inherits its garbage, and rotation keeps
        // the cyclic order, so the same route would always pay for it. A second of load on the
        // route itself, not counted, lets the collector catch up first.
        await load(targets[name], cookie, connections, 1);
        const cpuBefore = cpuSeconds(server.pid);
        const result = await load(targets[name], cookie, connections, durationSeconds);
        const cpuMicros = (cpuSeconds(server.pid) - cpuBefore) * 1e6;
        samples[name].push({ result, cpuMicrosPerRequest: cpuMicros / result.requests.total });
      }
    }

    const summarize = (name: keyof typeof targets): RouteLoad => {
      const results = samples[name].map((sample) => sample.result);
      return {
        route: name,
        requestsPerSecond: median(results.map((r) => r.requests.average)),
        p50Ms: median(results.map((r) => r.latency.p50)),
        p99Ms: median(results.map((r) => r.latency.p99)),
        non3xx: results.reduce((sum, r) => sum + r.requests.total - r['3xx'], 0),
        errors: results.reduce((sum, r) => sum + r.errors + r.timeouts, 0),
        cpuMicrosPerRequest: median(samples[name].map((sample) => sample.cpuMicrosPerRequest)),
      };
    };
    const perRound = (baseline: keyof typeof targets) =>
      samples.s3gate.map(
        (s, round) =>
          s.result.requests.average / (samples[baseline][round]?.result.requests.average ?? NaN),
      );
    return {
      connections,
      durationSeconds,
      rounds,
      routes: {
        s3gate: summarize('s3gate'),
        constant: summarize('constant'),
        naive: summarize('naive'),
        fullStack: summarize('fullStack'),
        read: summarize('read'),
      },
      roundRatios: { constant: perRound('constant'), naive: perRound('naive') },
    };
  } finally {
    await server.stop();
  }
}

if (require.main === module) {
  void benchRedirect(1, 5).then((r) => {
    console.log(JSON.stringify(r, null, 2));
  });
}
