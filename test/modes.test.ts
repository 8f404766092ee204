import request from 'supertest';
import { newImageId } from '../src/images/image-id';
import {
  MEMBER_PASSWORD,
  addMember,
  csrfFrom,
  loggedInAgent,
  startTestStack,
  uploadFixture,
  type TestStack,
} from './helpers/stack';

// The access rules live in the image router, in front of both delivery modes, so these tests hold
// each mode to the same responses.
describe.each(['redirect', 'proxy'] as const)('GET /image/:id in %s mode', (mode) => {
  let stack: TestStack;
  let admin: Awaited<ReturnType<typeof loggedInAgent>>;
  let imageId: string;
  let imageBytes: Buffer;
  const success = mode === 'redirect' ? 302 : 200;

  beforeAll(async () => {
    stack = await startTestStack({ DELIVERY_MODE: mode });
    await addMember(stack, 'viewer');
    admin = await loggedInAgent(stack.url);
    ({ id: imageId, bytes: imageBytes } = await uploadFixture(admin));
  });

  afterAll(async () => {
    await stack.stop();
  });

  it(`answers ${success} to a signed-in member`, async () => {
    const member = await loggedInAgent(stack.url, 'viewer', MEMBER_PASSWORD);
    const response = await member.get(`/image/${imageId}`).redirects(0).buffer(true);

    expect(response.status).toBe(success);
    if (mode === 'proxy')
      expect(Buffer.from(response.body as Buffer).equals(imageBytes)).toBe(true);
  });

  it('answers 401 with no-store without a session', async () => {
    const response = await request(stack.url).get(`/image/${imageId}`).set('Accept', 'image/*');

    expect(response.status).toBe(401);
    expect(response.headers['cache-control']).toBe('no-store');
    expect(response.headers.location).toBeUndefined();
  });

  it('answers 404 to malformed and unknown ids alike', async () => {
    for (const id of ['..%2Fsecret', 'x'.repeat(300), newImageId()]) {
      const response = await admin.get(`/image/${id}`).redirects(0);

      expect(response.status).toBe(404);
      expect(response.headers.location).toBeUndefined();
    }
  });

  it('answers HEAD for an unknown id with 404 and no body', async () => {
    const response = await admin.head(`/image/${newImageId()}`).redirects(0);

    expect(response.status).toBe(404);
    expect(response.text).toBeFalsy();
  });

  it('answers 401 after logout', async () => {
    const agent = await loggedInAgent(stack.url);
    const cookie = (await agent.get('/').redirects(0)).request.cookies;
    const gallery = await agent.get('/');
    await agent
      .post('/logout')
      .type('form')
      .send({ _csrf: csrfFrom(gallery.text) });
    const response = await request(stack.url)
      .get(`/image/${imageId}`)
      .set('Cookie', cookie)
      .set('Accept', 'image/*');

    expect(response.status).toBe(401);
  });

  it('sets nosniff on the image response', async () => {
    const response = await admin.get(`/image/${imageId}`).redirects(0);

    expect(response.headers['x-content-type-options']).toBe('nosniff');
  });
});

describe('REDIRECT_CACHE=aligned in proxy mode', () => {
  it('starts with a warning that it has no effect', async () => {
    const stack = await startTestStack({ DELIVERY_MODE: 'proxy', REDIRECT_CACHE: 'aligned' });
    try {
      expect(stack.logs.text()).toContain('REDIRECT_CACHE=aligned has no effect in proxy mode');
    } finally {
      await stack.stop();
    }
  });
});

describe('REDIRECT_CACHE_MARGIN_SECONDS over the minimum validity', () => {
  /** Start a stack with `env`, and return its log lines that mention the margin. */
  async function marginWarnings(env: Record<string, string>): Promise<string[]> {
    const stack = await startTestStack(env);
    try {
      return stack.logs.lines.filter((line) => line.includes('REDIRECT_CACHE_MARGIN_SECONDS'));
    } finally {
      await stack.stop();
    }
  }

  it('starts with a warning giving the uncached seconds', async () => {
    const warnings = await marginWarnings({
      REDIRECT_CACHE: 'aligned',
      REDIRECT_CACHE_MARGIN_SECONDS: '900',
    });

    expect(warnings).toHaveLength(1);
    const entry = JSON.parse(warnings[0] ?? '{}') as { level: number; msg: string };
    expect(entry.level).toBe(40);
    expect(entry.msg).toContain('not cached in the last 300 s of each 3600 s signing window');
  });

  it('logs no warning at the default margin', async () => {
    expect(await marginWarnings({ REDIRECT_CACHE: 'aligned' })).toEqual([]);
  });

  it('logs no warning in proxy mode', async () => {
    const warnings = await marginWarnings({
      DELIVERY_MODE: 'proxy',
      REDIRECT_CACHE: 'aligned',
      REDIRECT_CACHE_MARGIN_SECONDS: '900',
    });

    expect(warnings).toEqual([]);
  });
});
