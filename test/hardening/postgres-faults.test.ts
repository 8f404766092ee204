import pg from 'pg';
import request from 'supertest';
import { TEST_NAME_PREFIX, TEST_POSTGRES_URL, postgresBackendEnv } from '../helpers/backend';
import { TcpRelay } from '../helpers/faults';
import {
  ADMIN_PASSWORD,
  csrfFrom,
  loggedInAgent,
  makeDataDir,
  startTestStack,
  uploadFixture,
  type TestStack,
} from '../helpers/stack';

// Faults that only PostgreSQL has. This file runs in the postgres+redis project, which needs the
// machine's PostgreSQL; each stack here still chooses its own database and session store.

type Agent = Awaited<ReturnType<typeof loggedInAgent>>;

const UNAVAILABLE_MESSAGE = 'The database is unavailable. Try again shortly.';

/** Run one statement on the machine's PostgreSQL as the test's administrator. */
async function adminQuery(sql: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  try {
    return await client.query(sql, values);
  } finally {
    await client.end();
  }
}

/** POST the login form with a fresh session; returns the response. */
async function logIn(url: string, username = 'admin'): Promise<request.Response> {
  const agent = request.agent(url);
  const page = await agent.get('/login');
  return agent
    .post('/login')
    .type('form')
    .send({ _csrf: csrfFrom(page.text), username, password: ADMIN_PASSWORD });
}

describe('PostgreSQL unreachable', () => {
  // s3gate reaches the machine's PostgreSQL through a relay on loopback, so the test can cut
  // and refuse its connections without stopping the server that other tests use.
  const databaseName = `${TEST_NAME_PREFIX}down_${process.pid}`;
  let relay: TcpRelay;
  let stack: TestStack;
  let admin: Agent;
  let imageId: string;

  beforeAll(async () => {
    await adminQuery(`drop database if exists "${databaseName}" with (force)`);
    await adminQuery(`create database "${databaseName}"`);
    const target = new URL(TEST_POSTGRES_URL);
    relay = new TcpRelay(target.hostname, Number(target.port || 5432));
    await relay.listen();
    const url = new URL(TEST_POSTGRES_URL);
    url.host = `127.0.0.1:${relay.port}`;
    url.pathname = `/${databaseName}`;
    // An empty REDIS_URL counts as unset: sessions live in PostgreSQL too, so the outage
    // reaches them.
    stack = await startTestStack({
      DATA_DIR: makeDataDir(),
      DATABASE_URL: url.toString(),
      REDIS_URL: '',
      SESSION_SECRET: 'test-session-secret-with-at-least-32-characters',
    });
    admin = await loggedInAgent(stack.url);
    ({ id: imageId } = await uploadFixture(admin));
  });

  afterAll(async () => {
    await stack.stop();
    await relay.close();
    await adminQuery(`drop database if exists "${databaseName}" with (force)`);
  });

  describe('while down', () => {
    beforeAll(async () => {
      await relay.setMode('down');
    });

    it('answers pages with 503 and Retry-After', async () => {
      const response = await admin.get('/').set('Accept', 'text/html');

      expect(response.status).toBe(503);
      expect(response.headers['retry-after']).toBe('5');
      expect(response.text).toContain(UNAVAILABLE_MESSAGE);
    });

    it('answers image requests with 503', async () => {
      const response = await admin.get(`/image/${imageId}`).redirects(0);

      expect(response.status).toBe(503);
      expect(response.text).toBe(`${UNAVAILABLE_MESSAGE}\n`);
    });

    it('answers the login page with 503', async () => {
      const response = await request(stack.url).get('/login');

      expect(response.status).toBe(503);
      expect(response.text).toContain(UNAVAILABLE_MESSAGE);
    });

    it('fails /readyz and keeps /healthz', async () => {
      const ready = await request(stack.url).get('/readyz');

      expect(ready.status).toBe(503);
      expect(ready.body).toEqual({ status: 'unavailable', database: 'unavailable', storage: 'ok' });
      expect((await request(stack.url).get('/healthz')).status).toBe(200);
    });
  });

  describe('while it accepts and never replies', () => {
    beforeAll(async () => {
      await relay.setMode('forward');
      expect((await admin.get(`/image/${imageId}`).redirects(0)).status).toBe(302);
      await relay.setMode('silent');
    });

    afterAll(() => {
      // The hung connections end as a restarted server would end them.
      relay.dropSilentConnections();
    });

    it('answers image requests with 503 after the timeout', async () => {
      const started = Date.now();
      const response = await admin.get(`/image/${imageId}`).redirects(0);

      expect(response.status).toBe(503);
      expect(response.text).toBe(`${UNAVAILABLE_MESSAGE}\n`);
      // Queries time out after 5 s; the request must not wait for PostgreSQL without a limit.
      expect(Date.now() - started).toBeGreaterThanOrEqual(4_900);
      expect(Date.now() - started).toBeLessThan(15_000);
    });
  });

  describe('after it returns', () => {
    beforeAll(async () => {
      await relay.setMode('forward');
    });

    it('serves the same session again without a restart', async () => {
      expect((await admin.get('/')).status).toBe(200);
      expect((await admin.get(`/image/${imageId}`).redirects(0)).status).toBe(302);
      expect((await request(stack.url).get('/readyz')).status).toBe(200);
    });

    it('survives its connections being terminated by the server', async () => {
      const terminated = await adminQuery(
        'select pg_terminate_backend(pid) from pg_stat_activity where datname = $1',
        [databaseName],
      );
      expect(terminated.rowCount).toBeGreaterThan(0);

      // The pool notices the dead connections and opens new ones. At most the first request,
      // which may pick one up, fails with 503.
      const first = await admin.get('/');
      expect([200, 503]).toContain(first.status);
      expect((await admin.get('/')).status).toBe(200);
      expect((await logIn(stack.url)).status).toBe(303);
    });
  });
});

describe('PostgreSQL database dropped while the app runs', () => {
  // An operator mistake or a failed restore: the server is up, but the database is gone.
  // Every new connection fails with SQLSTATE 3D000, which must read as "unavailable", as on
  // /readyz, not as a bug.
  let stack: TestStack;
  let databaseName: string;
  let admin: Agent;
  let imageId: string;

  beforeAll(async () => {
    const dataDir = makeDataDir();
    const backend = await postgresBackendEnv(dataDir);
    databaseName = new URL(backend.DATABASE_URL ?? '').pathname.slice(1);
    stack = await startTestStack({ ...backend, DATA_DIR: dataDir, REDIS_URL: '' });
    admin = await loggedInAgent(stack.url);
    ({ id: imageId } = await uploadFixture(admin));
    await adminQuery(`drop database "${databaseName}" with (force)`);
  });

  afterAll(async () => {
    await stack.stop();
    await adminQuery(`drop database if exists "${databaseName}" with (force)`);
  });

  it('returns 503 and keeps serving', async () => {
    // The first request may still hold a connection that the drop terminated.
    await admin.get('/');

    const page = await admin.get('/');
    expect(page.status).toBe(503);
    expect(page.text).toContain(UNAVAILABLE_MESSAGE);
    const image = await admin.get(`/image/${imageId}`).redirects(0);
    expect(image.status).toBe(503);
    expect((await request(stack.url).get('/healthz')).status).toBe(200);
    expect((await request(stack.url).get('/readyz')).status).toBe(503);
  });
});

describe('NUL bytes on PostgreSQL', () => {
  // PostgreSQL rejects a NUL byte in text with an error, where SQLite just finds no match, so
  // these inputs must never reach a query there.
  let pgStack: TestStack;
  let databaseName: string;

  beforeAll(async () => {
    const dataDir = makeDataDir();
    const backend = await postgresBackendEnv(dataDir);
    databaseName = new URL(backend.DATABASE_URL ?? '').pathname.slice(1);
    pgStack = await startTestStack({ ...backend, DATA_DIR: dataDir });
  });

  afterAll(async () => {
    await pgStack.stop();
    await adminQuery(`drop database if exists "${databaseName}" with (force)`);
  });

  it('answers a NUL in a username with 401', async () => {
    const response = await logIn(pgStack.url, 'admin\u0000');

    expect(response.status).toBe(401);
    expect(response.text).toContain('Wrong username or password.');
  });

  it('answers a NUL in a user id with 404', async () => {
    const admin = await loggedInAgent(pgStack.url);
    const page = await admin.get('/admin/users');
    const response = await admin
      .post('/admin/users/%00/delete')
      .type('form')
      .send({ _csrf: csrfFrom(page.text) });

    expect(response.status).toBe(404);
    expect(response.text).toContain('That user no longer exists.');
  });
});
