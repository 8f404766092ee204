import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import request from 'supertest';
import { storedCounts } from '../helpers/faults';
import { makeImage } from '../helpers/images';
import {
  ADMIN_PASSWORD,
  csrfFrom,
  loggedInAgent,
  startTestStack,
  uploadFile,
  uploadFixture,
  type TestStack,
} from '../helpers/stack';

type Agent = Awaited<ReturnType<typeof loggedInAgent>>;

const UNAVAILABLE = {
  status: 503,
  code: 'DATABASE_UNAVAILABLE',
  message: 'The database is unavailable. Try again shortly.',
};

/** POST the login form; returns the response. */
async function logIn(url: string): Promise<request.Response> {
  const agent = request.agent(url);
  const page = await agent.get('/login');
  return agent
    .post('/login')
    .type('form')
    .send({ _csrf: csrfFrom(page.text), username: 'admin', password: ADMIN_PASSWORD });
}

describe('SQLite file made read-only', () => {
  // The immutable attribute makes the kernel reject writes even through the file descriptors
  // that SQLite already holds, as a read-only remount would. Permission bits cannot do that:
  // they are checked only when a file is opened, and root ignores them.
  let stack: TestStack;
  let admin: Agent;
  let imageId: string;
  let files: string[];
  let loginForm: ReturnType<typeof request.agent>;
  let loginToken: string;

  const setImmutable = (on: boolean) => {
    for (const file of files) execFileSync('chattr', [on ? '+i' : '-i', file]);
  };

  beforeAll(async () => {
    stack = await startTestStack();
    admin = await loggedInAgent(stack.url);
    ({ id: imageId } = await uploadFixture(admin));
    loginForm = request.agent(stack.url);
    loginToken = csrfFrom((await loginForm.get('/login')).text);
    const database = path.join(stack.dataDir, 's3gate.sqlite');
    files = [database, `${database}-wal`].filter((file) => fs.existsSync(file));
    setImmutable(true);
  });

  afterAll(async () => {
    setImmutable(false);
    await stack.stop();
  });

  it('makes writes fail', () => {
    const database = path.join(stack.dataDir, 's3gate.sqlite');

    expect(() => fs.appendFileSync(`${database}-wal`, 'x')).toThrow(/EPERM/);
  });

  it('answers the login page with 503 and Retry-After', async () => {
    const response = await request(stack.url).get('/login');

    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBe('5');
    expect(response.text).toContain(UNAVAILABLE.message);
  });

  it('answers a login from a form loaded before with 503', async () => {
    const response = await loginForm
      .post('/login')
      .type('form')
      .send({ _csrf: loginToken, username: 'admin', password: ADMIN_PASSWORD });

    expect(response.status).toBe(503);
    expect(response.text).toContain(UNAVAILABLE.message);
  });

  it('answers an upload with 503 and stores nothing', async () => {
    const before = await storedCounts(stack);
    const response = await uploadFile(admin, await makeImage('png'), 'x.png', 'image/png');

    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBe('5');
    expect((response.body as { error: unknown }).error).toEqual(UNAVAILABLE);
    expect(await storedCounts(stack)).toEqual(before);
  });

  it('answers a delete with 503 and keeps the image', async () => {
    const gallery = await admin.get('/');
    const response = await admin
      .post(`/admin/images/${imageId}/delete`)
      .type('form')
      .send({ _csrf: csrfFrom(gallery.text) });

    expect(response.status).toBe(503);
    expect(response.text).toContain(UNAVAILABLE.message);
    expect((await admin.get(`/image/${imageId}`).redirects(0)).status).toBe(302);
  });

  it('keeps serving reads: gallery, image redirects, /readyz', async () => {
    expect((await admin.get('/')).status).toBe(200);
    expect((await admin.get(`/image/${imageId}`).redirects(0)).status).toBe(302);
    expect((await request(stack.url).get('/readyz')).status).toBe(200);
  });

  it('recovers once the file is writable again', async () => {
    setImmutable(false);

    expect((await logIn(stack.url)).status).toBe(303);
    const before = await storedCounts(stack);
    await uploadFixture(admin);
    expect(await storedCounts(stack)).toEqual({
      objects: before.objects + 1,
      rows: before.rows + 1,
    });
  });
});
