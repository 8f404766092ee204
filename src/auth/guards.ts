import type { NextFunction, Request, Response } from 'express';
import { errors } from '../errors';

/** Send anonymous page requests to the login form, remembering where they were going. */
export function requireUser(req: Request, res: Response, next: NextFunction): void {
  if (req.isAuthenticated()) {
    next();
    return;
  }
  if (req.method === 'GET') {
    res.redirect(303, `/login?next=${encodeURIComponent(req.originalUrl)}`);
    return;
  }
  next(errors.loginRequired());
}

/** Allow administrators only; members get 403 and anonymous users the login form. */
export function requireAdmin(req: Request, res: Response, next: NextFunction): void {
  if (!req.isAuthenticated()) {
    requireUser(req, res, next);
    return;
  }
  if (req.user.role !== 'admin') {
    next(errors.adminRequired());
    return;
  }
  next();
}
