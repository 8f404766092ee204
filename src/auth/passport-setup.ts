import type { IncomingMessage } from 'node:http';
import type { Request } from 'express';
import { Passport, type PassportStatic } from 'passport';
import { Strategy as LocalStrategy, type IVerifyOptions } from 'passport-local';
import { dummyPasswordHash, verifyPassword } from './password';
import { MAX_PASSWORD_LENGTH, USERNAME_PATTERN, type UserRepository } from './user-repository';

/**
 * Details that passport-local passes as `info` when a sign-in fails. `knownUsername` is false when no
 * account has the name, which may then be a password typed into the wrong field, so the login
 * route logs the name only when it is true.
 */
export interface LoginFailure extends IVerifyOptions {
  knownUsername: boolean;
}

function loginFailure(knownUsername: boolean): LoginFailure {
  return { message: 'Wrong username or password.', knownUsername };
}

async function checkCredentials(
  users: UserRepository,
  username: string,
  password: string,
): Promise<Express.User | LoginFailure> {
  // No account can have a name outside the pattern, so such a name needs no lookup. It also keeps
  // a NUL byte away from PostgreSQL, which rejects it in text with an error (a 500).
  if (!USERNAME_PATTERN.test(username)) return loginFailure(false);
  const user = await users.findForLogin(username);
  // A password over the limit is never hashed, for known and unknown names alike.
  if (password.length > MAX_PASSWORD_LENGTH) return loginFailure(user !== undefined);
  if (!user) {
    // Spend the same time as a wrong password, so response times do not reveal user names.
    await verifyPassword(await dummyPasswordHash(), password);
    return loginFailure(false);
  }
  if (!(await verifyPassword(user.passwordHash, password))) return loginFailure(true);
  return { id: user.id, username: user.username, role: user.role };
}

/**
 * Decide whether a signed-in session may go on: it must not be older than the session lifetime,
 * however often it is used, and it must not predate the user's last password change.
 */
export function isSessionCurrent(
  signedInAt: unknown,
  passwordChangedAt: Date | null,
  maxAgeMs: number,
  now = Date.now(),
): boolean {
  if (typeof signedInAt !== 'number' || !Number.isFinite(signedInAt)) return false;
  if (now - signedInAt > maxAgeMs) return false;
  return passwordChangedAt === null || signedInAt >= passwordChangedAt.getTime();
}

/**
 * Load the user a session belongs to, or undefined when the user is gone or the session may no
 * longer be used (see `isSessionCurrent`). The session stores only the user id, so a removed
 * user or a changed role takes effect at once. passport's deserializer and the session reader
 * of the image route both run this check.
 */
export function createSessionUserLoader(
  users: UserRepository,
  sessionMaxAgeMs: number,
): (userId: unknown, signedInAt: unknown) => Promise<Express.User | undefined> {
  return async (userId, signedInAt) => {
    if (typeof userId !== 'string') return undefined;
    const user = await users.findById(userId);
    if (!user || !isSessionCurrent(signedInAt, user.passwordChangedAt, sessionMaxAgeMs)) {
      return undefined;
    }
    return { id: user.id, username: user.username, role: user.role };
  };
}

/**
 * Create a passport instance with the local (username and password) strategy. The session
 * stores only the user id, and each request loads the user again through `loadUser`.
 *
 * express-session extends a session's expiry on every request, so without a limit of its own
 * a stolen cookie that is used regularly would never expire. Each session therefore carries its
 * sign-in time (`signedInAt`, set by the login route), and `loadUser` refuses a session older
 * than the session lifetime or older than the last password change.
 */
export function createPassport(
  users: UserRepository,
  loadUser: ReturnType<typeof createSessionUserLoader>,
): PassportStatic {
  const passport = new Passport() as PassportStatic;

  passport.use(
    new LocalStrategy((username, password, done) => {
      checkCredentials(users, username, password)
        .then((result) => {
          if ('knownUsername' in result) done(null, false, result);
          else done(null, result);
        })
        .catch((error: unknown) => {
          done(error);
        });
    }),
  );

  passport.serializeUser((user, done) => {
    done(null, user.id);
  });

  passport.deserializeUser(
    (
      incoming: IncomingMessage,
      id: unknown,
      done: (error: unknown, user?: Express.User | false) => void,
    ) => {
      // passport calls this with the Express request, which express-session has given a session.
      const req = incoming as Request;
      loadUser(id, req.session.signedInAt)
        .then((user) => {
          done(null, user ?? false);
        })
        .catch((error: unknown) => {
          done(error);
        });
    },
  );

  return passport;
}
