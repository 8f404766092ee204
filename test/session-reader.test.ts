import { sign } from 'cookie-signature';
import express, { type Express } from 'express';
import session from 'express-session';
import fc from 'fast-check';
import request from 'supertest';
import { createSessionReader, readSessionId } from '../src/auth/session-reader';

/**
 * The session reader must accept exactly the sessions that express-session accepts. Each test
 * builds one app with both: express-session on /full, the reader on /read, over the same real
 * store (express-session's MemoryStore) and secrets, and compares the user each returns for one
 * cookie.
 */

const COOKIE = 'test.sid';
const SECRETS = ['current-secret-0123456789abcdef', 'previous-secret-0123456789abcdef'];

interface Harness {
  app: Express;
  store: session.MemoryStore;
  /** Users that loadUser accepts; removing one revokes its sessions. */
  users: Set<string>;
}

function createHarness(store = new session.MemoryStore()): Harness {
  const users = new Set(['u1']);
  const app = express();

  const reader = createSessionReader({
    store,
    secret: SECRETS,
    cookieName: COOKIE,
    loadUser: (stored) => {
      const id = stored.passport?.user;
      return Promise.resolve(
        typeof id === 'string' && users.has(id)
          ? { id, username: id, role: 'member' as const }
          : undefined,
      );
    },
  });
  app.get('/read', reader, (req, res) => {
    res.json({ user: req.user?.id ?? null, hasSession: 'session' in req });
  });

  app.use(
    session({
      name: COOKIE,
      secret: SECRETS,
      store,
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 60_000 },
    }),
  );
  app.post('/login', (req, res) => {
    req.session.passport = { user: 'u1' };
    req.session.signedInAt = Date.now();
    res.sendStatus(204);
  });
  app.get('/full', (req, res) => {
    const id = req.session.passport?.user;
    res.json({ user: typeof id === 'string' && users.has(id) ? id : null });
  });
  app.post('/logout', (req, res, next) => {
    req.session.destroy((error) => {
      if (error) next(error);
      else res.sendStatus(204);
    });
  });
  app.use(
    (error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(500).json({ error: error instanceof Error ? error.message : String(error) });
    },
  );
  return { app, store, users };
}

async function signIn(app: Express): Promise<string> {
  const response = await request(app).post('/login');
  const cookies = response.headers['set-cookie'] as unknown as string[];
  return cookies[0]?.split(';')[0] ?? '';
}

async function bothSee(app: Express, cookie: string): Promise<[unknown, unknown]> {
  const [read, full] = await Promise.all([
    request(app).get('/read').set('Cookie', cookie),
    request(app).get('/full').set('Cookie', cookie),
  ]);
  return [(read.body as { user: unknown }).user, (full.body as { user: unknown }).user];
}

describe('createSessionReader', () => {
  it('reads the signed-in user only', async () => {
    const { app } = createHarness();
    const cookie = await signIn(app);

    const read = await request(app).get('/read').set('Cookie', cookie);

    expect(read.body).toEqual({ user: 'u1', hasSession: false });
    expect(read.headers['set-cookie']).toBeUndefined();
  });

  it('rejects a destroyed session', async () => {
    const { app } = createHarness();
    const cookie = await signIn(app);
    expect(await bothSee(app, cookie)).toEqual(['u1', 'u1']);

    await request(app).post('/logout').set('Cookie', cookie).expect(204);

    expect(await bothSee(app, cookie)).toEqual([null, null]);
  });

  it('rejects a user loadUser rejects', async () => {
    const { app, users } = createHarness();
    const cookie = await signIn(app);

    users.delete('u1');

    expect(await bothSee(app, cookie)).toEqual([null, null]);
  });

  it('accepts an older secret', async () => {
    const { app } = createHarness();
    const cookie = await signIn(app);
    const sid = readSessionId(cookie, COOKIE, SECRETS) ?? '';
    const oldSigned = `${COOKIE}=${encodeURIComponent(`s:${sign(sid, SECRETS[1] ?? '')}`)}`;

    expect(await bothSee(app, oldSigned)).toEqual(['u1', 'u1']);
  });

  it('ignores unsigned and forged cookies', async () => {
    const { app } = createHarness();
    const cookie = await signIn(app);
    const sid = readSessionId(cookie, COOKIE, SECRETS) ?? '';
    const cases = [
      `${COOKIE}=${sid}`,
      `${COOKIE}=${encodeURIComponent(`s:${sign(sid, 'not-the-secret')}`)}`,
      `${COOKIE}=${encodeURIComponent(`s:${sid}.`)}`,
      `other.sid=${cookie.slice(COOKIE.length + 1)}`,
      `${COOKIE}=`,
      '',
    ];

    for (const forged of cases) {
      expect(await bothSee(app, forged)).toEqual([null, null]);
    }
  });

  it('matches express-session on mangled cookies', async () => {
    const { app } = createHarness();
    const cookie = await signIn(app);
    const value = cookie.slice(COOKIE.length + 1);

    // Cut, extend or flip one character of the signed value; pad with other cookies around it.
    const mangled = fc
      .tuple(
        fc.nat({ max: value.length }),
        fc.constantFrom('cut', 'flip', 'insert', 'keep'),
        fc.string({ maxLength: 3 }),
        fc.boolean(),
      )
      .map(([at, change, text, padded]) => {
        let v = value;
        if (change === 'cut') v = v.slice(0, at);
        if (change === 'flip') v = `${v.slice(0, at)}${text || 'x'}${v.slice(at + 1)}`;
        if (change === 'insert') v = `${v.slice(0, at)}${text}${v.slice(at)}`;
        const pair = `${COOKIE}=${v}`;
        return padded ? `a=1; ${pair}; b=2` : pair;
      });

    await fc.assert(
      fc.asyncProperty(mangled, async (header) => {
        const [read, full] = await bothSee(app, header);
        expect(read).toBe(full);
      }),
      { numRuns: 150 },
    );
  });

  it('passes store failures to next', async () => {
    const store = new session.MemoryStore();
    const { app } = createHarness(store);
    const cookie = await signIn(app);
    store.get = (_sid, callback) => {
      callback(new Error('store unreachable'), null);
    };

    const read = await request(app).get('/read').set('Cookie', cookie);

    expect(read.status).toBe(500);
    expect(read.body).toEqual({ error: 'store unreachable' });
  });

  it('rejects an empty secret list', () => {
    expect(() =>
      createSessionReader({
        store: new session.MemoryStore(),
        secret: [],
        cookieName: COOKIE,
        loadUser: () => Promise.resolve(undefined),
      }),
    ).toThrow(/`secret` is missing or empty/);
  });
});
