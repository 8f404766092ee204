import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import request from 'supertest';
import { EMBEDDED_S3_CREDENTIALS } from '../src/storage/embedded-s3';
import { createS3Client } from '../src/storage/s3-client';
import { createUrlSigner } from '../src/storage/url-signer';
import { postgresBackendEnv } from './helpers/backend';
import {
  csrfFrom,
  fetchPlain,
  loggedInAgent,
  makeDataDir,
  startTestStack,
  uploadFixture,
  type TestStack,
} from './helpers/stack';

// These tests are about PostgreSQL and Redis, so they use them in every project.
let dataDir: string;
let a: TestStack;
let b: TestStack;

async function startPair(): Promise<[TestStack, TestStack]> {
  const backend = await postgresBackendEnv(dataDir);
  const first = await startTestStack({ ...backend, DATA_DIR: dataDir, LOGIN_MAX_FAILURES: '3' });
  // Instance B has its own process state and reaches A's S3 server as an external store.
  const second = await startTestStack(
    {
      ...backend,
      DATA_DIR: makeDataDir(),
      LOGIN_MAX_FAILURES: '3',
      S3_BUCKET: 's3gate-images',
      S3_ENDPOINT: first.runtime.embeddedS3?.endpoint ?? '',
    },
    { s3Credentials: EMBEDDED_S3_CREDENTIALS },
  );
  return [first, second];
}

beforeAll(async () => {
  dataDir = makeDataDir();
  [a, b] = await startPair();
});

afterAll(async () => {
  await b.stop();
  await a.stop();
});

function cookieOf(agent: Awaited<ReturnType<typeof loggedInAgent>>): Promise<string> {
  return agent
    .get('/')
    .redirects(0)
    .then((response) => response.request.cookies);
}

describe('two instances on PostgreSQL and Redis', () => {
  it('serve a session from A on B', async () => {
    const agentA = await loggedInAgent(a.url);
    const { id } = await uploadFixture(agentA);
    const cookie = await cookieOf(agentA);
    const fromB = await request(b.url).get(`/image/${id}`).set('Cookie', cookie).redirects(0);

    expect(fromB.status).toBe(302);
    expect(fromB.headers.location).toBe(
      (await agentA.get(`/image/${id}`).redirects(0)).headers.location,
    );
  });

  it('end the session on B after logout on A', async () => {
    const agentA = await loggedInAgent(a.url);
    const { id } = await uploadFixture(agentA);
    const cookie = await cookieOf(agentA);
    const gallery = await agentA.get('/');
    await agentA
      .post('/logout')
      .type('form')
      .send({ _csrf: csrfFrom(gallery.text) });
    const fromB = await request(b.url)
      .get(`/image/${id}`)
      .set('Cookie', cookie)
      .set('Accept', 'image/*');

    expect(fromB.status).toBe(401);
  });

  it('answer 404 on B right after a delete on A', async () => {
    const agentA = await loggedInAgent(a.url);
    const { id } = await uploadFixture(agentA);
    const cookie = await cookieOf(agentA);
    // Warm B's signed-URL cache first: the delete must win over it.
    expect(
      (await request(b.url).get(`/image/${id}`).set('Cookie', cookie).redirects(0)).status,
    ).toBe(302);
    const gallery = await agentA.get('/');
    await agentA
      .post(`/admin/images/${id}/delete`)
      .type('form')
      .send({ _csrf: csrfFrom(gallery.text) });

    expect(
      (await request(b.url).get(`/image/${id}`).set('Cookie', cookie).redirects(0)).status,
    ).toBe(404);
  });

  it('keep users, images and sessions across a restart of both', async () => {
    const agentA = await loggedInAgent(a.url);
    const { id, bytes } = await uploadFixture(agentA);
    const cookie = await cookieOf(agentA);
    await b.stop();
    await a.stop();
    [a, b] = await startPair();

    const fromB = await request(b.url).get(`/image/${id}`).set('Cookie', cookie).redirects(0);
    expect(fromB.status).toBe(302);
    const object = await fetchPlain(fromB.headers.location ?? '');
    expect(object.body.equals(bytes)).toBe(true);
  });
});

describe('temporary credentials', () => {
  it('clamp X-Amz-Expires to their expiry and count it', async () => {
    const expiration = new Date(Date.now() + 10 * 60 * 1000);
    // Stands in for STS or an IAM role: the embedded server accepts these keys, with any expiry.
    const client = createS3Client({
      region: 'us-east-1',
      endpoint: a.runtime.embeddedS3?.endpoint,
      forcePathStyle: true,
      credentials: () => Promise.resolve({ ...EMBEDDED_S3_CREDENTIALS, expiration }),
    });
    const clamps: number[] = [];
    const signer = createUrlSigner({
      client,
      bucket: 's3gate-images',
      windowSeconds: 3600,
      minValiditySeconds: 600,
      onLifetimeClamped: ({ lifetimeSeconds }) => clamps.push(lifetimeSeconds),
    });
    const agent = await loggedInAgent(a.url);
    const { id } = await uploadFixture(agent);
    const image = await a.runtime.database.db
      .selectFrom('images')
      .select('s3_key')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();

    const url = new URL(await signer.sign({ key: image.s3_key }));
    await signer.sign({ key: image.s3_key });
    const signedAt = Date.parse(
      (url.searchParams.get('X-Amz-Date') ?? '').replace(
        /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/,
        '$1-$2-$3T$4:$5:$6Z',
      ),
    );
    const expires = Number(url.searchParams.get('X-Amz-Expires'));

    expect(signedAt + expires * 1000).toBeLessThanOrEqual(expiration.getTime());
    expect(expires).toBeLessThan(3600 + 600);
    expect(signer.stats.clamped).toBe(1);
    expect(clamps).toEqual([expires]);
    expect((await fetchPlain(url.toString())).status).toBe(200);
  });
});

describe('WEB_CONCURRENCY', () => {
  it('runs two workers and stops them on SIGTERM', async () => {
    const root = path.join(__dirname, '..');
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'pipe' });
    const backend = await postgresBackendEnv(makeDataDir());
    const child = spawn(process.execPath, ['dist/server.js'], {
      cwd: root,
      env: {
        ...process.env,
        ...backend,
        WEB_CONCURRENCY: '2',
        PORT: '0',
        DATA_DIR: makeDataDir(),
        S3_BUCKET: 's3gate-images',
        S3_ENDPOINT: a.runtime.embeddedS3?.endpoint ?? '',
        AWS_ACCESS_KEY_ID: EMBEDDED_S3_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: EMBEDDED_S3_CREDENTIALS.secretAccessKey,
        ADMIN_PASSWORD: 'admin-password-for-tests',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => resolve(code)),
    );

    // Wait for both workers to listen, then stop the primary.
    for (let i = 0; i < 100 && (output.match(/s3gate is listening/g) ?? []).length < 2; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect((output.match(/s3gate is listening/g) ?? []).length).toBe(2);
    child.kill('SIGTERM');

    expect(await exited).toBe(0);
    expect((output.match(/worker stopped/g) ?? []).length).toBe(2);
  });
});

// Last, because it leaves this client address locked out of signing in.
describe('failed logins', () => {
  it('count across instances', async () => {
    const statuses: number[] = [];
    for (const url of [a.url, a.url, b.url, b.url]) {
      const agent = request.agent(url);
      const page = await agent.get('/login');
      const response = await agent
        .post('/login')
        .type('form')
        .send({ _csrf: csrfFrom(page.text), username: 'admin', password: 'wrong-password' });
      statuses.push(response.status);
    }

    expect(statuses).toEqual([401, 401, 401, 429]);
  });
});
