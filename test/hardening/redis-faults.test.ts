import net from 'node:net';
import request from 'supertest';
import { TEST_NAME_PREFIX, TEST_REDIS_URL } from '../helpers/backend';
import { TcpRelay } from '../helpers/faults';
import { loggedInAgent, startTestStack, uploadFixture, type TestStack } from '../helpers/stack';

// Sessions in Redis, reached through a relay on loopback, so the test can refuse and hang its
// connections without touching the Redis that other tests use. The database is SQLite. This
// file runs in the postgres+redis project, which needs the machine's Redis.

type Agent = Awaited<ReturnType<typeof loggedInAgent>>;

const UNAVAILABLE_MESSAGE = 'Sign-in sessions are unavailable. Try again shortly.';

describe('Redis unreachable at start', () => {
  it('fails start-up with a clear error', async () => {
    // A port that was free a moment ago, so the connection is refused.
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise((resolve) => probe.close(resolve));

    await expect(
      startTestStack({ DATABASE_URL: '', REDIS_URL: `redis://127.0.0.1:${port}` }),
    ).rejects.toThrow(/Could not connect to Redis at REDIS_URL: .*ECONNREFUSED/);
  });
});

describe('Redis faults', () => {
  let relay: TcpRelay;
  let stack: TestStack;
  let admin: Agent;
  let imageId: string;

  beforeAll(async () => {
    const target = new URL(TEST_REDIS_URL);
    relay = new TcpRelay(target.hostname, Number(target.port || 6379));
    await relay.listen();
    const url = new URL(TEST_REDIS_URL);
    url.host = `127.0.0.1:${relay.port}`;
    stack = await startTestStack({
      DATABASE_URL: '',
      REDIS_URL: url.toString(),
      REDIS_KEY_PREFIX: `${TEST_NAME_PREFIX}redis_faults_${process.pid}:`,
    });
    admin = await loggedInAgent(stack.url);
    ({ id: imageId } = await uploadFixture(admin));
  });

  afterAll(async () => {
    await stack.stop();
    await relay.close();
  });

  /** Request the image until Redis serves sessions again; node-redis reconnects with back-off. */
  async function imageStatusOnceRecovered(): Promise<number> {
    let status = 0;
    for (let attempt = 0; attempt < 40 && status !== 302; attempt += 1) {
      status = (await admin.get(`/image/${imageId}`).redirects(0)).status;
      if (status !== 302) await new Promise((resolve) => setTimeout(resolve, 250));
    }
    return status;
  }

  describe('while Redis accepts and never replies', () => {
    beforeAll(async () => {
      // A connected client, so the command is sent and then waits for a reply that never comes.
      expect((await admin.get(`/image/${imageId}`).redirects(0)).status).toBe(302);
      await relay.setMode('silent');
    });

    afterAll(async () => {
      // The hung connection ends as a restarted server would end it, and node-redis reconnects.
      relay.dropSilentConnections();
      await relay.setMode('forward');
    });

    it('answers image requests with 503 after the timeout', async () => {
      const started = Date.now();
      const response = await admin.get(`/image/${imageId}`).redirects(0);

      expect(response.status).toBe(503);
      expect(response.text).toBe(`${UNAVAILABLE_MESSAGE}\n`);
      // The command timeout is 3 s; the request must not wait for Redis without a limit.
      expect(Date.now() - started).toBeGreaterThanOrEqual(2_900);
      expect(Date.now() - started).toBeLessThan(10_000);
    });
  });

  describe('while Redis refuses connections', () => {
    beforeAll(async () => {
      expect(await imageStatusOnceRecovered()).toBe(302);
      await relay.setMode('down');
    });

    afterAll(async () => {
      await relay.setMode('forward');
    });

    it('answers image requests with 503', async () => {
      const response = await admin.get(`/image/${imageId}`).redirects(0);

      expect(response.status).toBe(503);
      expect(response.headers['retry-after']).toBe('5');
      expect(response.text).toBe(`${UNAVAILABLE_MESSAGE}\n`);
    });

    it('answers pages with 503', async () => {
      const response = await admin.get('/').set('Accept', 'text/html');

      expect(response.status).toBe(503);
      expect(response.text).toContain(UNAVAILABLE_MESSAGE);
    });

    it('fails /readyz naming the sessions', async () => {
      const ready = await request(stack.url).get('/readyz');

      expect(ready.status).toBe(503);
      expect(ready.body).toEqual({
        status: 'unavailable',
        database: 'ok',
        storage: 'ok',
        sessions: 'unavailable',
      });
    });
  });

  describe('after Redis returns', () => {
    it('serves the same session again without a restart', async () => {
      expect(await imageStatusOnceRecovered()).toBe(302);
      expect((await admin.get('/')).status).toBe(200);
      expect((await request(stack.url).get('/readyz')).body).toEqual({
        status: 'ok',
        database: 'ok',
        storage: 'ok',
        sessions: 'ok',
      });
    });
  });
});
