import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import {
  EMBEDDED_S3_CREDENTIALS,
  startEmbeddedS3,
  type EmbeddedS3,
} from '../src/storage/embedded-s3';

export const ADMIN_PASSWORD = 'bench-admin-password';

const ROOT = path.join(__dirname, '..');
let built = false;

/**
 * Compile the app into dist/ with tsc, once per process, so the benchmarks measure the code that
 * `npm start` runs. tsx, which runs the benchmark scripts, compiles with esbuild's keepNames: it
 * wraps every closure in a call that sets its name, and the app makes several closures per
 * request, which slowed the image route by a visible share.
 */
export function buildApp(): void {
  if (built) return;
  process.stderr.write('bench: compiling the app into dist/ with tsc…\n');
  execFileSync(path.join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json'], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  built = true;
}

export interface BenchServer {
  url: string;
  pid: number;
  dataDir: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Run a benchmark script of this folder in a new process and return the JSON it prints on
 * stdout. A section whose load generator shares its thread with a server (the S3 emulator of
 * the proxy benchmark) is then not slowed by the heap that earlier sections left behind.
 */
export async function runInFreshProcess<T>(script: string): Promise<T> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, script)], {
    env: process.env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) {
    throw new Error(`bench/${script} exited with ${String(code)}; its error is printed above.`);
  }
  return JSON.parse(output) as T;
}

/** Start bench/bench-server.ts in its own process, so the app does not share a core with the load generator. */
export async function startBenchServer(env: Record<string, string> = {}): Promise<BenchServer> {
  buildApp();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 's3gate-bench-'));
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(__dirname, 'bench-server.ts')],
    {
      env: {
        ...process.env,
        DATA_DIR: dataDir,
        PORT: '0',
        EMBEDDED_S3_PORT: '0',
        ADMIN_PASSWORD,
        NODE_ENV: 'production',
        // The login limit would stop the many sign-ins of a benchmark run.
        LOGIN_MAX_FAILURES: '100000',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const ready = await new Promise<{ url: string; pid: number }>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bench server exited with ${String(code)}`)));
    lines.on('line', (line) => {
      if (line.startsWith('{"url"')) resolve(JSON.parse(line) as { url: string; pid: number });
    });
  });
  return {
    ...ready,
    dataDir,
    child,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Resident set size of a process in bytes, from /proc (Linux). */
export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kib ?? 0) * 1024;
}

/**
 * Restrict a process and all of its threads to a list of CPUs, such as "0" or "0-1", with taskset
 * from util-linux. Threads started later inherit the list. Returns false when taskset is missing
 * or fails.
 */
export function setCpuAffinity(pid: number, cpus: string): boolean {
  try {
    execFileSync('taskset', ['--all-tasks', '--cpu-list', '--pid', cpus, String(pid)], {
      stdio: 'ignore',
    });
    return true;
  } catch {
    return false;
  }
}

let clockTicksPerSecond: number | undefined;

/**
 * CPU time a process has used so far, user plus system, in seconds, from /proc (Linux). It
 * counts all of the process's threads, so the SQLite and garbage-collector work is in it.
 */
export function cpuSeconds(pid: number): number {
  clockTicksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
  // The command name in field 2 may contain spaces, so count fields from the ") " after it.
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond;
}

/** Sign in through the login form and return the session cookie. */
export async function signIn(url: string): Promise<string> {
  const page = await fetch(`${url}/login`);
  const cookie = (page.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())?.[1] ?? '';
  const response = await fetch(`${url}/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      _csrf: csrf,
      username: 'admin',
      password: ADMIN_PASSWORD,
      next: '/',
    }),
  });
  if (response.status !== 303) throw new Error(`sign-in failed with ${response.status}`);
  return (response.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
}

/** Upload one file through the admin form and return its id. */
export async function upload(
  url: string,
  cookie: string,
  bytes: Buffer,
  name: string,
): Promise<string> {
  const page = await fetch(`${url}/admin/upload`, { headers: { cookie } });
  const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())?.[1] ?? '';
  const form = new FormData();
  form.append('_csrf', csrf);
  form.append('images', new Blob([bytes]), name);
  const response = await fetch(`${url}/admin/images`, {
    method: 'POST',
    headers: { cookie, accept: 'application/json' },
    body: form,
  });
  if (response.status !== 201)
    throw new Error(`upload failed with ${response.status}: ${await response.text()}`);
  const body = (await response.json()) as { images: { id: string }[] };
  return body.images[0]?.id ?? '';
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

export interface ExternalS3 {
  s3: EmbeddedS3;
  directory: string;
  /** Variables that point a bench server at this S3 server as an external endpoint. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * Start an S3 server in this process for a bench server to use as an external endpoint, so the
 * app's memory and CPU figures do not include the emulator's.
 */
export async function startExternalS3(bucket = 'bench'): Promise<ExternalS3> {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 's3gate-bench-s3-'));
  const s3 = await startEmbeddedS3({ directory, bucket, port: 0 });
  return {
    s3,
    directory,
    env: {
      S3_BUCKET: bucket,
      S3_ENDPOINT: s3.endpoint,
      AWS_ACCESS_KEY_ID: EMBEDDED_S3_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: EMBEDDED_S3_CREDENTIALS.secretAccessKey,
    },
    stop: async () => {
      await s3.close();
      fs.rmSync(directory, { recursive: true, force: true });
    },
  };
}
