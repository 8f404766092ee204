import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import autocannon from 'autocannon';
import sharp from 'sharp';
import { EMBEDDED_S3_CREDENTIALS, startEmbeddedS3 } from '../src/storage/embedded-s3';
import { ADMIN_PASSWORD, buildApp, signIn, upload } from './harness';

/**
 * Soak test, not run in CI: the real server (src/server.ts) in a child process, loaded by
 * autocannon for SOAK_SECONDS (default 60) at SOAK_CONNECTIONS (default 64) on /image/:id, once
 * in redirect mode and once in proxy mode, on loopback only. It prints a Markdown table and the
 * raw figures as JSON.
 *
 *   npm run soak
 *   SOAK_SECONDS=10 npm run soak
 */

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
const CONNECTIONS = Number(process.env.SOAK_CONNECTIONS ?? 64);
const WARM_UP_SECONDS = 5;
const BUCKET = 'soak';
const MiB = 1024 * 1024;
const ROOT = path.join(__dirname, '..');

interface SoakResult {
  mode: 'redirect' | 'proxy';
  objectBytes: number;
  requests: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Responses that were neither 2xx nor 3xx. */
  otherStatuses: number;
  /** Connection errors and timeouts. */
  errors: number;
  rssStartBytes: number;
  rssAfterWarmUpBytes: number;
  rssAfterBytes: number;
}

/** Find a free loopback port: bind port 0, note the port, close it again. */
async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** Resident set size of a process in bytes, from /proc (Linux). */
function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/** Start the compiled server (dist/server.js, as `npm start` does) with `env` and wait until /healthz returns 200. */
async function startServer(
  env: Record<string, string>,
): Promise<{ url: string; child: ChildProcess }> {
  buildApp();
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'server.js')], {
    cwd: ROOT,
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: String(port),
      NODE_ENV: 'production',
      // Request lines at info level would make the pipe and the log the bottleneck.
      LOG_LEVEL: 'warn',
      ADMIN_PASSWORD,
      SESSION_SECRET: 'soak-session-secret-with-at-least-32-characters',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 300; attempt += 1) {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}`);
    const healthy = await fetch(`${url}/healthz`).then(
      (response) => response.ok,
      () => false,
    );
    if (healthy) return { url, child };
    await delay(100);
  }
  child.kill('SIGKILL');
  throw new Error('the server did not respond to /healthz within 30 s; see its output above');
}

async function stopServer(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

function load(url: string, cookie: string, seconds: number): Promise<autocannon.Result> {
  // autocannon does not follow redirects, so redirect mode measures the 302 alone.
  return autocannon({ url, connections: CONNECTIONS, duration: seconds, headers: { cookie } });
}

async function soak(
  mode: SoakResult['mode'],
  s3Env: Record<string, string>,
  image: Buffer,
): Promise<SoakResult> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 's3gate-soak-'));
  const { url, child } = await startServer({ ...s3Env, DATA_DIR: dataDir, DELIVERY_MODE: mode });
  const pid = child.pid ?? 0;
  try {
    const cookie = await signIn(url);
    const target = `${url}/image/${await upload(url, cookie, image, 'soak.jpg')}`;
    const rssStartBytes = rssBytes(pid);
    await load(target, cookie, WARM_UP_SECONDS);
    const rssAfterWarmUpBytes = rssBytes(pid);

    process.stderr.write(`soak: ${mode} mode, ${SECONDS} s at ${CONNECTIONS} connections…\n`);
    const result = await load(target, cookie, SECONDS);
    const rssAfterBytes = rssBytes(pid);
    return {
      mode,
      objectBytes: image.length,
      requests: result.requests.total,
      requestsPerSecond: result.requests.average,
      p50Ms: result.latency.p50,
      p99Ms: result.latency.p99,
      otherStatuses: result['1xx'] + result['4xx'] + result['5xx'],
      errors: result.errors + result.timeouts,
      rssStartBytes,
      rssAfterWarmUpBytes,
      rssAfterBytes,
    };
  } finally {
    await stopServer(child);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

function table(results: SoakResult[]): string {
  const mib = (bytes: number) => (bytes / MiB).toFixed(0);
  const rows = results.map((r) => {
    const growth = (r.rssAfterBytes - r.rssAfterWarmUpBytes) / MiB;
    return (
      `| ${r.mode} | ${r.requests} | ${r.requestsPerSecond.toFixed(0)} | ${r.p50Ms} | ${r.p99Ms} | ` +
      `${r.otherStatuses} | ${r.errors} | ${mib(r.rssStartBytes)} → ${mib(r.rssAfterWarmUpBytes)} → ` +
      `${mib(r.rssAfterBytes)} | ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} |`
    );
  });
  return [
    '| mode | requests | req/s | p50 ms | p99 ms | not 2xx/3xx | errors | RSS MiB: start → after warm-up → after | RSS growth MiB |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

async function main(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  // The S3 server runs in this process, so the app's RSS does not include the emulator's.
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 's3gate-soak-s3-'));
  const s3 = await startEmbeddedS3({ directory, bucket: BUCKET, port: 0 });
  const s3Env = {
    S3_BUCKET: BUCKET,
    S3_ENDPOINT: s3.endpoint,
    AWS_ACCESS_KEY_ID: EMBEDDED_S3_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: EMBEDDED_S3_CREDENTIALS.secretAccessKey,
  };
  // A 200×150 noise JPEG (about 20 KB), the size of a thumbnail; noise keeps JPEG from
  // compressing it away.
  const image = await sharp({
    create: {
      width: 200,
      height: 150,
      channels: 3,
      background: '#808080',
      noise: { type: 'gaussian', mean: 128, sigma: 40 },
    },
  })
    .jpeg({ quality: 90 })
    .toBuffer();

  try {
    const results = [await soak('redirect', s3Env, image), await soak('proxy', s3Env, image)];
    process.stdout.write(`${table(results)}\n\n${JSON.stringify(results, null, 2)}\n`);
    const worst = Math.max(...results.map((r) => r.rssAfterBytes - r.rssAfterWarmUpBytes));
    process.stderr.write(
      `soak: target RSS growth < 50 MiB: ${worst < 50 * MiB ? 'met' : 'NOT met'}\n`,
    );
  } finally {
    await s3.close();
    fs.rmSync(directory, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `soak failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
