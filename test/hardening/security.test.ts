import express from 'express';
import request from 'supertest';
import { newImageId } from '../../src/images/image-id';
import { createImageRouter } from '../../src/images/image-router';
import { ImageRepository } from '../../src/images/image-repository';
import { createLogger } from '../../src/logger';
import { createErrorHandler } from '../../src/web/error-handler';
import {
  LogCapture,
  MEMBER_PASSWORD,
  addMember,
  csrfFrom,
  loggedInAgent,
  startTestStack,
  uploadFixture,
  type TestStack,
} from '../helpers/stack';

type Agent = Awaited<ReturnType<typeof loggedInAgent>>;

/** Find the session cookie that a response sets, with its attributes. */
function sessionCookie(response: request.Response): string | undefined {
  const cookies = response.headers['set-cookie'] as unknown as string[] | undefined;
  return cookies?.find((cookie) => cookie.startsWith('s3gate.sid='));
}

/** Attribute names of a Set-Cookie value, lowercased: httponly, samesite=lax, secure. */
function attributes(cookie: string | undefined): string[] {
  return (cookie ?? '')
    .split(';')
    .slice(1)
    .map((part) => part.trim().toLowerCase())
    .filter((part) => !part.startsWith('expires=') && !part.startsWith('path='));
}

describe('session cookie', () => {
  let plain: TestStack;
  let behindProxy: TestStack;

  beforeAll(async () => {
    plain = await startTestStack();
    behindProxy = await startTestStack({ TRUST_PROXY: 'loopback' });
  });

  afterAll(async () => {
    await behindProxy.stop();
    await plain.stop();
  });

  /** Load the login form and sign in with `headers` on both requests; returns both cookies. */
  async function signIn(stack: TestStack, headers: Record<string, string>) {
    const page = await request(stack.url).get('/login').set(headers);
    // Sent by hand: a cookie jar keeps a Secure cookie away from this plain-HTTP connection,
    // which is what the TLS proxy in front would otherwise provide.
    const login = await request(stack.url)
      .post('/login')
      .set(headers)
      .set('Cookie', (sessionCookie(page) ?? '').split(';')[0] ?? '')
      .type('form')
      .send({
        _csrf: csrfFrom(page.text),
        username: 'admin',
        password: 'admin-password-for-tests',
      });
    return { page: sessionCookie(page), login: sessionCookie(login), status: login.status };
  }

  it('is HttpOnly and SameSite=Lax, without Secure over plain HTTP', async () => {
    const cookies = await signIn(plain, {});

    expect(cookies.status).toBe(303);
    for (const cookie of [cookies.page, cookies.login]) {
      expect(attributes(cookie)).toEqual(expect.arrayContaining(['httponly', 'samesite=lax']));
      expect(attributes(cookie)).not.toContain('secure');
    }
  });

  it('ignores a client’s own X-Forwarded-Proto without TRUST_PROXY', async () => {
    const cookies = await signIn(plain, { 'X-Forwarded-Proto': 'https' });

    expect(cookies.status).toBe(303);
    expect(cookies.login).toBeDefined();
    expect(attributes(cookies.login)).not.toContain('secure');
  });

  it('adds Secure behind a trusted TLS proxy', async () => {
    const cookies = await signIn(behindProxy, { 'X-Forwarded-Proto': 'https' });

    expect(cookies.status).toBe(303);
    expect(attributes(cookies.page)).toEqual(
      expect.arrayContaining(['httponly', 'samesite=lax', 'secure']),
    );
    expect(attributes(cookies.login)).toEqual(
      expect.arrayContaining(['httponly', 'samesite=lax', 'secure']),
    );
  });

  it('has no Secure behind a proxy over plain HTTP', async () => {
    const cookies = await signIn(behindProxy, { 'X-Forwarded-Proto': 'http' });

    expect(attributes(cookies.login)).not.toContain('secure');
  });
});

describe('members and admin routes', () => {
  let stack: TestStack;
  let admin: Agent;
  let member: Agent;
  let memberToken: string;
  let imageId: string;
  let adminUserId: string;

  beforeAll(async () => {
    stack = await startTestStack();
    await addMember(stack, 'member');
    admin = await loggedInAgent(stack.url);
    member = await loggedInAgent(stack.url, 'member', MEMBER_PASSWORD);
    memberToken = csrfFrom((await member.get('/')).text);
    ({ id: imageId } = await uploadFixture(admin));
    const row = await stack.runtime.database.db
      .selectFrom('users')
      .select('id')
      .where('username', '=', 'admin')
      .executeTakeFirstOrThrow();
    adminUserId = row.id;
  });

  afterAll(async () => {
    await stack.stop();
  });

  it('answers 403 to a member creating an account, and creates none', async () => {
    const response = await member.post('/admin/users').type('form').send({
      _csrf: memberToken,
      username: 'mallory',
      password: 'mallory-password',
      role: 'admin',
    });

    expect(response.status).toBe(403);
    expect(response.text).toContain('This page is for administrators only.');
    const mallory = await stack.runtime.database.db
      .selectFrom('users')
      .select('id')
      .where('username', '=', 'mallory')
      .executeTakeFirst();
    expect(mallory).toBeUndefined();
  });

  it('answers 403 to a member removing the administrator, who stays', async () => {
    const response = await member
      .post(`/admin/users/${adminUserId}/delete`)
      .type('form')
      .send({ _csrf: memberToken });

    expect(response.status).toBe(403);
    expect((await admin.get('/admin/users')).status).toBe(200);
  });

  it('answers 403 to a member deleting a known and an unknown image alike', async () => {
    // requireAdmin runs before the lookup, so the response cannot tell whether the image exists.
    const known = await member
      .post(`/admin/images/${imageId}/delete`)
      .type('form')
      .send({ _csrf: memberToken });
    const unknown = await member
      .post(`/admin/images/${newImageId()}/delete`)
      .type('form')
      .send({ _csrf: memberToken });

    expect(known.status).toBe(403);
    expect(unknown.status).toBe(403);
    expect(known.text).toBe(unknown.text);
  });

  it.each([
    ['GET', '/admin/upload'],
    ['GET', '/admin/users'],
    ['POST', '/admin/images'],
    ['POST', '/admin/users'],
  ])('sends anonymous %s %s to the login page or 401, never the page', async (method, path) => {
    const response =
      method === 'GET'
        ? await request(stack.url).get(path).redirects(0)
        : await request(stack.url).post(path).type('form').send({});

    expect([303, 401, 403]).toContain(response.status);
    if (response.status === 303) expect(response.headers.location).toMatch(/^\/login\?next=/);
  });
});

describe('images a user may not see', () => {
  // The default rule lets every account see every image, so a bare app with an `authorize` hook
  // that hides one image takes the place of a host app with its own rules.
  let stack: TestStack;
  let hiddenId: string;
  let visibleId: string;

  beforeAll(async () => {
    stack = await startTestStack();
    const admin = await loggedInAgent(stack.url);
    ({ id: hiddenId } = await uploadFixture(admin));
    ({ id: visibleId } = await uploadFixture(admin));
  });

  afterAll(async () => {
    await stack.stop();
  });

  function bareApp(): express.Express {
    const images = new ImageRepository(stack.runtime.database.db);
    const app = express();
    app.set('etag', false);
    app.use(
      createImageRouter({
        mode: 'redirect',
        signer: stack.runtime.signer,
        isSignedIn: () => true,
        findImage: (id) => images.findById(id),
        authorize: (_req, image) => image.id !== hiddenId,
        cacheMaxAgeSeconds: 60,
      }),
    );
    app.use(createErrorHandler(createLogger('silent', new LogCapture())));
    return app;
  }

  /** Pick what a client can compare between two responses: status, headers without Date, body. */
  function observable(response: request.Response) {
    const headers = { ...response.headers };
    delete headers.date;
    return { status: response.status, headers, body: response.text };
  }

  it('answers a hidden image exactly as an unknown one', async () => {
    const app = bareApp();
    const hidden = await request(app).get(`/image/${hiddenId}`);
    const unknown = await request(app).get(`/image/${newImageId()}`);
    const hiddenHead = await request(app).head(`/image/${hiddenId}`);
    const unknownHead = await request(app).head(`/image/${newImageId()}`);

    expect(hidden.status).toBe(404);
    expect(observable(hidden)).toEqual(observable(unknown));
    expect(observable(hiddenHead)).toEqual(observable(unknownHead));
    expect((await request(app).get(`/image/${visibleId}`)).status).toBe(302);
  });
});

describe('security headers', () => {
  let stack: TestStack;
  let proxyStack: TestStack;
  let admin: Agent;
  let proxyAdmin: Agent;
  let imageId: string;
  let proxyImageId: string;

  beforeAll(async () => {
    stack = await startTestStack();
    proxyStack = await startTestStack({ DELIVERY_MODE: 'proxy' });
    admin = await loggedInAgent(stack.url);
    proxyAdmin = await loggedInAgent(proxyStack.url);
    ({ id: imageId } = await uploadFixture(admin));
    ({ id: proxyImageId } = await uploadFixture(proxyAdmin));
  });

  afterAll(async () => {
    await proxyStack.stop();
    await stack.stop();
  });

  const requests: [string, () => Promise<request.Response>][] = [
    ['the gallery', () => admin.get('/')],
    ['the login page', () => request(stack.url).get('/login')],
    ['the upload page', () => admin.get('/admin/upload')],
    ['the users page', () => admin.get('/admin/users')],
    ['a 404 page', () => admin.get('/no-such-page')],
    ['a 403 page', () => request(stack.url).post('/login').type('form').send({})],
    [
      'a 413 page',
      () =>
        request(stack.url)
          .post('/login')
          .type('form')
          .send({ a: 'x'.repeat(20_000) }),
    ],
    ['a 400 for a malformed escape', () => admin.get('/image/%zz')],
    ['an image redirect', () => admin.get(`/image/${imageId}`).redirects(0)],
    ['an unknown image', () => admin.get(`/image/${newImageId()}`)],
    [
      'an anonymous image request',
      () => request(stack.url).get(`/image/${imageId}`).set('Accept', 'image/*'),
    ],
    ['a proxied image', () => proxyAdmin.get(`/image/${proxyImageId}`)],
    ['a proxied range', () => proxyAdmin.get(`/image/${proxyImageId}`).set('Range', 'bytes=0-9')],
    ['a stylesheet', () => request(stack.url).get('/assets/style.css')],
    ['/healthz', () => request(stack.url).get('/healthz')],
    ['/readyz', () => request(stack.url).get('/readyz')],
  ];

  it.each(requests)('are on %s', async (_name, send) => {
    const response = await send();
    const csp = response.headers['content-security-policy'] ?? '';

    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("object-src 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect(response.headers['referrer-policy']).toBe('same-origin');
    expect(response.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(response.headers['x-powered-by']).toBeUndefined();
  });
});
