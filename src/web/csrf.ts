import { timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { csrfSync } from 'csrf-sync';
import { errors } from '../errors';

/**
 * CSRF protection with the synchronizer token pattern: the token lives in the server-side
 * session and every form posts it back as `_csrf` (or the `x-csrf-token` header for scripts).
 */
const csrf = csrfSync({
  getTokenFromRequest: (req) => {
    const header = req.headers['x-csrf-token'];
    if (typeof header === 'string') return header;
    const body = req.body as Record<string, unknown> | undefined;
    return typeof body?._csrf === 'string' ? body._csrf : undefined;
  },
});

/** Check a token that was read by other means, such as a multipart field; constant time. */
export function isValidCsrfToken(req: Request, token: string | undefined): boolean {
  const stored = csrf.getTokenFromState(req);
  if (typeof token !== 'string' || typeof stored !== 'string') return false;
  const a = Buffer.from(token);
  const b = Buffer.from(stored);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Put the session's token (made on first use) into res.locals for the views. */
export function issueCsrfToken(req: Request, res: Response): void {
  res.locals.csrfToken = csrf.generateToken(req);
}

/** Give every view a token, and reject unsafe requests without a valid one. */
export function csrfProtection(req: Request, res: Response, next: NextFunction): void {
  const hadToken = typeof csrf.getTokenFromState(req) === 'string';
  issueCsrfToken(req, res);
  if (['GET', 'HEAD', 'OPTIONS'].includes(req.method)) {
    if (hadToken) {
      next();
      return;
    }
    // Store a new token before the page goes out. express-session saves only after the response
    // is sent, so a failed save (database down) would leave a form whose token never works.
    req.session.save((error?: unknown) => {
      next(error);
    });
    return;
  }
  if (!isValidCsrfToken(req, csrf.getTokenFromRequest(req) ?? undefined)) {
    next(errors.csrfInvalid());
    return;
  }
  next();
}
