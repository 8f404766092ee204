import request from 'supertest';
import { EMBEDDED_S3_CREDENTIALS } from '../../src/storage/embedded-s3';
import { makeImage } from '../helpers/images';
import {
  ADMIN_PASSWORD,
  MEMBER_PASSWORD,
  addMember,
  csrfFrom,
  startTestStack,
  uploadFile,
  type TestStack,
} from '../helpers/stack';

const WRONG_PASSWORD = 'wrong-password-that-must-not-be-logged';

/** Secrets seen during the scenario, each with a name for the failure message. */
class Secrets {
  private readonly values = new Map<string, string>();

  add(name: string, value: string | undefined | null): void {
    // Short values would match by chance; every real secret here is far longer.
    if (value && value.length >= 6) this.values.set(value, name);
  }

  /** Add the cookie value, the signed value and the bare session id of a Cookie header. */
  addCookie(name: string, cookieHeader: string): void {
    const raw = /s3gate\.sid=([^;]+)/.exec(cookieHeader)?.[1];
    if (!raw) return;
    const signed = decodeURIComponent(raw);
    this.add(`${name} cookie`, raw);
    this.add(`${name} signed session id`, signed);
    this.add(`${name} session id`, signed.slice(2, signed.lastIndexOf('.')));
  }

  addSignedUrl(name: string, url: string | undefined): void {
    if (!url) return;
    const params = new URL(url).searchParams;
    this.add(`${name} X-Amz-Signature`, params.get('X-Amz-Signature'));
  }

  /** List each secret found in a line, with its name and the start of that line. */
  findIn(lines: string[]): string[] {
    const found: string[] = [];
    for (const line of lines) {
      for (const [value, name] of this.values) {
        if (line.includes(value)) found.push(`${name} in: ${line.slice(0, 300)}`);
      }
    }
    return found;
  }
}

describe.each(['redirect', 'proxy'] as const)('logs in %s mode at trace level', (mode) => {
  let stack: TestStack;
  const secrets = new Secrets();

  beforeAll(async () => {
    stack = await startTestStack({ DELIVERY_MODE: mode, LOG_LEVEL: 'trace' });
    await addMember(stack, 'member');
    secrets.add('admin password', ADMIN_PASSWORD);
    secrets.add('member password', MEMBER_PASSWORD);
    secrets.add('wrong password', WRONG_PASSWORD);
    secrets.add('session secret', stack.runtime.config.session.secret);
    // The embedded server's key id and secret are both "S3RVER".
    secrets.add('S3 access key id', EMBEDDED_S3_CREDENTIALS.accessKeyId);
    secrets.add('S3 secret access key', EMBEDDED_S3_CREDENTIALS.secretAccessKey);
  });

  afterAll(async () => {
    await stack.stop();
  });

  it('contain no password, session id, cookie, CSRF token, S3 key or signature', async () => {
    // Sign in as the admin, through the real form.
    const admin = request.agent(stack.url);
    const loginPage = await admin.get('/login');
    const loginToken = csrfFrom(loginPage.text);
    secrets.add('login CSRF token', loginToken);
    secrets.addCookie('pre-login', loginPage.request.cookies);
    expect(
      (
        await admin
          .post('/login')
          .type('form')
          .send({ _csrf: loginToken, username: 'admin', password: ADMIN_PASSWORD })
      ).status,
    ).toBe(303);
    const gallery = await admin.get('/');
    const adminToken = csrfFrom(gallery.text);
    secrets.add('admin CSRF token', adminToken);
    secrets.addCookie('admin', gallery.request.cookies);

    // A failed login by someone else, and a member's login.
    const stranger = request.agent(stack.url);
    const strangerPage = await stranger.get('/login');
    const failed = await stranger
      .post('/login')
      .type('form')
      .send({ _csrf: csrfFrom(strangerPage.text), username: 'admin', password: WRONG_PASSWORD });
    expect(failed.status).toBe(401);
    const member = request.agent(stack.url);
    const memberPage = await member.get('/login');
    await member
      .post('/login')
      .type('form')
      .send({ _csrf: csrfFrom(memberPage.text), username: 'member', password: MEMBER_PASSWORD });
    secrets.addCookie('member', (await member.get('/')).request.cookies);

    // Upload, with the token in a header as scripts send it, and an Authorization header that a
    // proxy might pass on.
    const upload = await admin
      .post('/admin/images')
      .set('Accept', 'application/json')
      .set('X-CSRF-Token', adminToken)
      .set('Authorization', 'Bearer secret-bearer-token-123456')
      .attach('images', await makeImage('png'), 'photo.png');
    secrets.add('bearer token', 'secret-bearer-token-123456');
    expect(upload.status).toBe(201);
    const id = (upload.body as { images: { id: string }[] }).images[0]?.id ?? '';

    // Read the image: redirect (and follow it) or proxy, plain and as a download, GET and HEAD.
    for (const path of [`/image/${id}`, `/image/${id}?download`]) {
      const get = await member.get(path).redirects(0);
      const head = await member.head(path).redirects(0);
      // Embedded mode streams downloads through the app even in redirect mode.
      const expectedStatus = mode === 'redirect' && !path.endsWith('?download') ? 302 : 200;
      expect(get.status).toBe(expectedStatus);
      secrets.addSignedUrl('GET redirect', get.headers.location);
      secrets.addSignedUrl('HEAD redirect', head.headers.location);
      if (get.headers.location) expect((await fetch(get.headers.location)).status).toBe(200);
    }
    if (mode === 'proxy') {
      expect((await member.get(`/image/${id}`).set('Range', 'bytes=0-9')).status).toBe(206);
    }

    // 5xx: S3 goes away, so an upload and (in proxy mode) a read fail with 503.
    await stack.runtime.embeddedS3?.close();
    const failedUpload = await uploadFile(admin, await makeImage('png'), 'down.png', 'image/png');
    expect(failedUpload.status).toBe(503);
    if (mode === 'proxy') expect((await member.get(`/image/${id}`)).status).toBe(503);
    expect((await request(stack.url).get('/readyz')).status).toBe(503);

    // Sign out.
    const logout = await admin
      .post('/logout')
      .type('form')
      .send({ _csrf: csrfFrom((await admin.get('/')).text) });
    expect(logout.status).toBe(303);

    const lines = stack.logs.lines;
    // The scenario did log: one line per request, and the 5xx with its error.
    expect(lines.length).toBeGreaterThan(20);
    expect(lines.some((line) => line.includes('"level":50') && line.includes('"err"'))).toBe(true);
    expect(secrets.findIn(lines)).toEqual([]);
    for (const line of lines) {
      expect(line).not.toMatch(/X-Amz-Signature|X-Amz-Credential|AWS4-HMAC-SHA256|Signature=/i);
      expect(line).not.toMatch(/s3gate\.sid/);
    }
  });
});

describe('logs when S3 rejects the signature', () => {
  // A wrong secret is a real fault of the embedded server. Like AWS, it responds with
  // SignatureDoesNotMatch and puts the access key id and the string to sign in its error body,
  // and the SDK copies those fields onto the error object that s3gate logs.
  const wrongSecret = 'wrong-secret-access-key-for-this-test';
  let store: TestStack;
  let stack: TestStack;

  beforeAll(async () => {
    store = await startTestStack();
    stack = await startTestStack(
      {
        LOG_LEVEL: 'trace',
        S3_BUCKET: store.runtime.config.s3.bucket,
        S3_ENDPOINT: store.runtime.embeddedS3?.endpoint ?? '',
      },
      {
        s3Credentials: {
          accessKeyId: EMBEDDED_S3_CREDENTIALS.accessKeyId,
          secretAccessKey: wrongSecret,
        },
      },
    );
  });

  afterAll(async () => {
    await stack.stop();
    await store.stop();
  });

  it('contain neither the access key id nor the string to sign', async () => {
    const admin = request.agent(stack.url);
    const page = await admin.get('/login');
    await admin
      .post('/login')
      .type('form')
      .send({ _csrf: csrfFrom(page.text), username: 'admin', password: ADMIN_PASSWORD });

    const upload = await uploadFile(admin, await makeImage('png'), 'x.png', 'image/png');
    const ready = await request(stack.url).get('/readyz');

    expect(upload.status).toBe(502);
    expect(ready.status).toBe(503);
    const lines = stack.logs.lines;
    expect(
      lines.some((line) => line.includes('"level":50') && line.includes('SignatureDoesNotMatch')),
    ).toBe(true);
    const secrets = new Secrets();
    secrets.add('S3 access key id', EMBEDDED_S3_CREDENTIALS.accessKeyId);
    secrets.add('S3 secret access key', wrongSecret);
    expect(secrets.findIn(lines)).toEqual([]);
    // The fields may stay, as long as their values are gone.
    for (const line of lines) {
      expect(line).not.toMatch(
        /"(StringToSign|CanonicalRequest|SignatureProvided)(Bytes)?":"(?!\[redacted\]")/,
      );
    }
  });
});
