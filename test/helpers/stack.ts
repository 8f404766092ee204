import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import request from 'supertest';
import { UserRepository } from '../../src/auth/user-repository';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/logger';
import { startRuntime, type Runtime, type RuntimeOverrides } from '../../src/runtime';
import { postgresBackendEnv, usesPostgres } from './backend';
import { makeImage } from './images';

export const ADMIN_PASSWORD = 'admin-password-for-tests';
export const MEMBER_PASSWORD = 'member-password-for-tests';

/** Collects every log line, so tests can read what was logged. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    callback();
  }
  text(): string {
    return this.lines.join('\n');
  }
}

export interface TestStack {
  runtime: Runtime;
  url: string;
  dataDir: string;
  logs: LogCapture;
  /** Stop this instance; the data directory stays for a restart. */
  stop(): Promise<void>;
}

const createdDataDirs = new Set<string>();

export function makeDataDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 's3gate-test-'));
  createdDataDirs.add(dir);
  return dir;
}

/** Delete the data directories this test file created; run after all its tests. */
export function removeDataDirs(): void {
  for (const dir of createdDataDirs) fs.rmSync(dir, { recursive: true, force: true });
  createdDataDirs.clear();
}

/**
 * Start a whole s3gate on loopback: the embedded S3 server on a free port, SQLite in a temp
 * folder (or PostgreSQL and Redis in the postgres+redis project), and the app on a free port.
 * `env` overrides any variable.
 */
export async function startTestStack(
  env: Record<string, string> = {},
  overrides: RuntimeOverrides = {},
): Promise<TestStack> {
  const dataDir = env.DATA_DIR ?? makeDataDir();
  const backend = usesPostgres() ? await postgresBackendEnv(dataDir) : {};
  const config = loadConfig({
    PORT: '0',
    EMBEDDED_S3_PORT: '0',
    ADMIN_PASSWORD,
    LOG_LEVEL: 'info',
    ...backend,
    ...env,
    DATA_DIR: dataDir,
  });
  const logs = new LogCapture();
  const runtime = await startRuntime(config, createLogger(config.logLevel, logs), overrides);
  return { runtime, url: runtime.url, dataDir, logs, stop: () => runtime.close() };
}

/** Read the CSRF token out of a rendered page. */
export function csrfFrom(html: string): string {
  const match = /name="_csrf" value="([^"]+)"/.exec(html);
  if (!match?.[1]) throw new Error('no CSRF token in the page');
  return match[1];
}

/** A supertest agent that keeps cookies, signed in through the real login form. */
export async function loggedInAgent(
  url: string,
  username = 'admin',
  password = ADMIN_PASSWORD,
): Promise<ReturnType<typeof request.agent>> {
  const agent = request.agent(url);
  const page = await agent.get('/login').expect(200);
  const response = await agent
    .post('/login')
    .type('form')
    .send({ _csrf: csrfFrom(page.text), username, password, next: '/' });
  if (response.status !== 303)
    throw new Error(`login as ${username} failed with ${response.status}`);
  return agent;
}

/** Create a member account directly in the database. */
export async function addMember(stack: TestStack, username = 'member'): Promise<void> {
  await new UserRepository(stack.runtime.database.db).create(username, MEMBER_PASSWORD, 'member');
}

/** Upload one file through the admin form as a browser script would; returns the response. */
export async function uploadFile(
  agent: ReturnType<typeof request.agent>,
  body: Buffer,
  filename: string,
  contentType = 'application/octet-stream',
) {
  const page = await agent.get('/admin/upload').expect(200);
  return agent
    .post('/admin/images')
    .set('Accept', 'application/json')
    .field('_csrf', csrfFrom(page.text))
    .attach('images', body, { filename, contentType });
}

/** Upload a fresh PNG and return its id. */
export async function uploadFixture(
  agent: ReturnType<typeof request.agent>,
  image?: Buffer,
  filename = 'fixture.png',
): Promise<{ id: string; bytes: Buffer }> {
  const bytes = image ?? (await makeImage('png'));
  const response = await uploadFile(agent, bytes, filename, 'image/png');
  if (response.status !== 201)
    throw new Error(`upload failed with ${response.status}: ${response.text}`);
  const id = (response.body as { images: { id: string }[] }).images[0]?.id;
  if (!id) throw new Error('upload answered without an id');
  return { id, bytes };
}

/** Delete an image through the admin form on the gallery page; returns the response. */
export async function deleteImage(agent: ReturnType<typeof request.agent>, id: string) {
  const gallery = await agent.get('/');
  return agent
    .post(`/admin/images/${id}/delete`)
    .type('form')
    .send({ _csrf: csrfFrom(gallery.text) });
}

/** GET a URL with Node's fetch and no extra headers, as an <img> would; the body as bytes. */
export async function fetchPlain(
  url: string,
): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const response = await fetch(url, { redirect: 'manual' });
  return {
    status: response.status,
    headers: response.headers,
    body: Buffer.from(await response.arrayBuffer()),
  };
}
