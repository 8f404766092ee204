import request from 'supertest';
import { ADMIN_PASSWORD, csrfFrom, startTestStack, type TestStack } from '../helpers/stack';

type Agent = ReturnType<typeof request.agent>;

let stack: TestStack;

beforeAll(async () => {
  // A high limit, so the malformed logins below never reach the failed-login limit.
  stack = await startTestStack({ LOGIN_MAX_FAILURES: '1000' });
});

afterAll(async () => {
  await stack.stop();
});

/** A fresh session with its login form loaded; returns the agent and the form's CSRF token. */
async function loginForm(url = stack.url): Promise<{ agent: Agent; token: string }> {
  const agent = request.agent(url);
  const page = await agent.get('/login').expect(200);
  return { agent, token: csrfFrom(page.text) };
}

/** POST a raw urlencoded body; `{token}` in it is replaced with the session's CSRF token. */
async function postLogin(body: string, contentType = 'application/x-www-form-urlencoded') {
  const { agent, token } = await loginForm();
  return agent
    .post('/login')
    .set('Content-Type', contentType)
    .send(body.replaceAll('{token}', encodeURIComponent(token)));
}

describe('POST /login with malformed fields', () => {
  const missing = 'Enter a username and a password.';
  const wrong = 'Wrong username or password.';
  const cases: [string, () => string, number, string][] = [
    ['no password', () => '_csrf={token}&username=admin', 400, missing],
    ['no username', () => `_csrf={token}&password=${ADMIN_PASSWORD}`, 400, missing],
    ['empty values', () => '_csrf={token}&username=&password=', 400, missing],
    [
      'username[] instead of username',
      () => `_csrf={token}&username[]=admin&password=${ADMIN_PASSWORD}`,
      400,
      missing,
    ],
    [
      'a repeated username',
      () => `_csrf={token}&username=admin&username=other&password=${ADMIN_PASSWORD}`,
      400,
      missing,
    ],
    [
      'a repeated password',
      () => `_csrf={token}&username=admin&password=${ADMIN_PASSWORD}&password=x`,
      400,
      missing,
    ],
    [
      'a 10,000-character username',
      () => `_csrf={token}&username=${'a'.repeat(10_000)}&password=x`,
      401,
      wrong,
    ],
    [
      'a 10,000-character password',
      () => `_csrf={token}&username=admin&password=${'p'.repeat(10_000)}`,
      401,
      wrong,
    ],
    [
      'a NUL byte in the username',
      () => `_csrf={token}&username=admin%00&password=${ADMIN_PASSWORD}`,
      401,
      wrong,
    ],
  ];

  it.each(cases)('answers %s with its status and message', async (_name, body, status, message) => {
    const started = performance.now();
    const response = await postLogin(body());

    expect(response.status).toBe(status);
    expect(response.text).toContain(message);
    expect(response.headers['set-cookie']).toBeUndefined();
    // Over-long values are turned away before any password hash is computed.
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('answers 413 for a body over 16 KB', async () => {
    const response = await postLogin(`_csrf={token}&username=${'a'.repeat(20_000)}&password=x`);

    expect(response.status).toBe(413);
    expect(response.text).toContain('request entity too large');
  });

  it('answers 413 for more than 20 fields', async () => {
    const extra = Array.from({ length: 25 }, (_, i) => `f${i}=1`).join('&');
    const response = await postLogin(`_csrf={token}&username=admin&password=x&${extra}`);

    expect(response.status).toBe(413);
  });

  it('answers 400 for a JSON body', async () => {
    const { agent, token } = await loginForm();
    const response = await agent
      .post('/login')
      .set('X-CSRF-Token', token)
      .send({ username: 'admin', password: ADMIN_PASSWORD });

    expect(response.status).toBe(400);
    expect(response.text).toContain('Enter a username and a password.');
  });
});

describe('POST /login CSRF check', () => {
  async function loginWith(agent: Agent, csrf: string | string[] | undefined) {
    const fields: Record<string, unknown> = { username: 'admin', password: ADMIN_PASSWORD };
    if (csrf !== undefined) fields._csrf = csrf;
    return agent.post('/login').type('form').send(fields);
  }

  it('answers 403 to a token from another session', async () => {
    const other = await loginForm();
    const { agent } = await loginForm();
    const response = await loginWith(agent, other.token);

    expect(response.status).toBe(403);
    expect(response.text).toContain('The form expired or came from another site.');
    expect(response.headers['set-cookie']).toBeUndefined();
  });

  it('answers 403 to an empty token', async () => {
    const { agent } = await loginForm();

    expect((await loginWith(agent, '')).status).toBe(403);
  });

  it('answers 403 to the right token sent twice', async () => {
    const { agent, token } = await loginForm();

    expect((await loginWith(agent, [token, token])).status).toBe(403);
  });

  it('answers 403 to a token without any session', async () => {
    const { token } = await loginForm();
    const response = await request(stack.url)
      .post('/login')
      .type('form')
      .send({ _csrf: token, username: 'admin', password: ADMIN_PASSWORD });

    expect(response.status).toBe(403);
  });

  it('signs in with the session’s own token', async () => {
    const { agent, token } = await loginForm();

    expect((await loginWith(agent, token)).status).toBe(303);
  });
});

describe('failed-login limit', () => {
  let limited: TestStack;

  beforeAll(async () => {
    limited = await startTestStack({
      LOGIN_MAX_FAILURES: '3',
      LOGIN_FAILURE_WINDOW_SECONDS: '600',
    });
  });

  afterAll(async () => {
    await limited.stop();
  });

  async function attempt(password: string, headers: Record<string, string> = {}) {
    const { agent, token } = await loginForm(limited.url);
    return agent
      .post('/login')
      .set(headers)
      .type('form')
      .send({ _csrf: token, username: 'admin', password });
  }

  it('answers 429 with Retry-After, even to the right password, whatever X-Forwarded-For says', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await attempt(`wrong-${i}`)).status);
    // Without TRUST_PROXY, a client's own X-Forwarded-For must not give it a fresh count.
    const spoofed = await attempt('wrong-3', { 'X-Forwarded-For': '203.0.113.7' });
    const right = await attempt(ADMIN_PASSWORD);

    expect(statuses).toEqual([401, 401, 401]);
    expect(spoofed.status).toBe(429);
    expect(right.status).toBe(429);
    expect(Number(right.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(right.headers['retry-after'])).toBeLessThanOrEqual(600);
    expect(right.text).toContain('Too many failed sign-in attempts.');
    expect(right.headers['set-cookie']).toBeUndefined();
  });
});
