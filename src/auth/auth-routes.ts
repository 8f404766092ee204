import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { PassportStatic } from 'passport';
import type { Logger } from '../logger';
import { csrfProtection } from '../web/csrf';
import type { LoginFailure } from './passport-setup';
import { safeNextPath } from './safe-next';

export interface AuthRoutesOptions {
  passport: PassportStatic;
  logger: Logger;
  /** Middleware run before the login check, such as the failed-login rate limit. */
  loginLimiter?: express.RequestHandler;
  /** Name of the session cookie, cleared at logout. */
  cookieName: string;
}

function renderLogin(
  res: Response,
  status: number,
  next: string,
  error?: string,
  username = '',
): void {
  res.status(status).render('login', { title: 'Sign in', next, error, username });
}

/** Create the routes for the login form (GET and POST /login) and for POST /logout. */
export function createAuthRoutes(options: AuthRoutesOptions): Router {
  const router = express.Router();
  const { passport, logger } = options;

  router.get('/login', csrfProtection, (req, res) => {
    if (req.isAuthenticated()) {
      res.redirect(303, safeNextPath(req.query.next));
      return;
    }
    renderLogin(res, 200, safeNextPath(req.query.next));
  });

  const login = (req: Request, res: Response, next: NextFunction) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const target = safeNextPath(body.next);
    const username = typeof body.username === 'string' ? body.username : '';
    if (
      typeof body.username !== 'string' ||
      typeof body.password !== 'string' ||
      !username ||
      !body.password
    ) {
      renderLogin(res, 400, target, 'Enter a username and a password.', username.slice(0, 64));
      return;
    }

    const authenticate = passport.authenticate(
      'local',
      (error: unknown, user: Express.User | false, failure?: LoginFailure) => {
        if (error) {
          next(error);
          return;
        }
        if (!user) {
          // A name that matches no account may be a password typed into the wrong field.
          const account = failure?.knownUsername
            ? { username: username.slice(0, 64) }
            : { knownUsername: false };
          logger.info({ event: 'login_failed', ...account }, 'login failed');
          renderLogin(res, 401, target, 'Wrong username or password.', username.slice(0, 64));
          return;
        }
        // passport 0.7 regenerates the session here, so a session id fixed before login is worthless.
        req.login(user, (loginError) => {
          if (loginError) return next(loginError);
          // The session's absolute lifetime counts from here; see createPassport.
          req.session.signedInAt = Date.now();
          logger.info({ event: 'login', userId: user.id }, 'user signed in');
          res.redirect(303, target);
        });
      },
    ) as express.RequestHandler;
    void authenticate(req, res, next);
  };
  router.post(
    '/login',
    ...(options.loginLimiter ? [options.loginLimiter] : []),
    csrfProtection,
    login,
  );

  router.post('/logout', csrfProtection, (req, res, next) => {
    const userId = req.user?.id;
    req.logout((logoutError) => {
      if (logoutError) return next(logoutError);
      // Destroy the session row as well, so the old cookie is worthless even if it was copied.
      req.session.destroy((destroyError) => {
        if (destroyError) return next(destroyError);
        if (userId) logger.info({ event: 'logout', userId }, 'user signed out');
        res.clearCookie(options.cookieName, { path: '/' });
        // Proxy mode caches images under this origin; drop them from this browser's cache.
        res.setHeader('Clear-Site-Data', '"cache"');
        res.redirect(303, '/login');
      });
    });
  });

  return router;
}
