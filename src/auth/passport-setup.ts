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
 * Create a passport instance with the local (username and password) strategy. The session
 * stores only the user id; each request loads the user again, so a removed user or a changed
 * role takes effect at once.
 */
export function createPassport(users: UserRepository): PassportStatic {
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

  passport.deserializeUser((id: unknown, done) => {
    if (typeof id !== 'string') return done(null, false);
    users
      .findById(id)
      .then((user) =>
        done(null, user ? { id: user.id, username: user.username, role: user.role } : false),
      )
      .catch((error: unknown) => done(error));
  });

  return passport;
}
