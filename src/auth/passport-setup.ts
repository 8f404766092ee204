import type { IncomingMessage } from 'node:http';
import type { Request } from 'express';
import { Passport, type PassportStatic } from 'passport';
import { Strategy as LocalStrategy } from 'passport-local';
import { dummyPasswordHash, verifyPassword } from './password';
import { MAX_PASSWORD_LENGTH, USERNAME_PATTERN, type UserRepository } from './user-repository';

async function checkCredentials(
  users: UserRepository,
  username: string,
  password: string,
): Promise<Express.User | undefined> {
  // No account can have a name outside the pattern, so such a name needs no lookup. It also keeps
  // a NUL byte away from PostgreSQL, which rejects it in text with an error (a 500).
  if (!USERNAME_PATTERN.test(username) || password.length > MAX_PASSWORD_LENGTH) return undefined;
  const user = await users.findForLogin(username);
  if (!user) {
    // Spend the same time as a wrong password, so response times do not reveal user names.
    await verifyPassword(await dummyPasswordHash(), password);
    return undefined;
  }
  if (!(await verifyPassword(user.passwordHash, password))) return undefined;
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
 * Create a passport instance with the local (username and password) strategy. The session
 * stores only the user id; each request loads the user again, so a removed user or a changed
 * role takes effect at once.
 *
 * express-session extends a session's expiry on every request, so without a limit of its own
 * a stolen cookie that is used regularly would never expire. Each session therefore carries its
 * sign-in time (`signedInAt`, set by the login route), and a session older than
 * `sessionMaxAgeMs`, or older than the last password change, no longer deserializes.
 */
export function createPassport(users: UserRepository, sessionMaxAgeMs: number): PassportStatic {
  const passport = new Passport() as PassportStatic;

  passport.use(
    new LocalStrategy((username, password, done) => {
      checkCredentials(users, username, password)
        .then((user) => {
          done(null, user ?? false);
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
      if (typeof id !== 'string') return done(null, false);
      users
        .findById(id)
        .then((user) => {
          if (
            !user ||
            !isSessionCurrent(req.session.signedInAt, user.passwordChangedAt, sessionMaxAgeMs)
          ) {
            done(null, false);
            return;
          }
          done(null, { id: user.id, username: user.username, role: user.role });
        })
        .catch((error: unknown) => done(error));
    },
  );

  return passport;
}
