import express, { type Response, type Router } from 'express';
import type { Logger } from '../logger';
import { csrfProtection } from '../web/csrf';
import { requireAdmin } from './guards';
import { InvalidUserError, type UserRepository } from './user-repository';

const USER_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Create the admin page that lists accounts and adds or removes them. */
export function createUsersRoutes(users: UserRepository, logger: Logger): Router {
  const router = express.Router();

  const renderPage = async (res: Response, status: number, error?: string, notice?: string) => {
    res
      .status(status)
      .render('users', { title: 'Users', users: await users.list(), error, notice });
  };

  router.get('/admin/users', requireAdmin, csrfProtection, async (_req, res) => {
    await renderPage(res, 200);
  });

  router.post('/admin/users', requireAdmin, csrfProtection, async (req, res) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const username = typeof body.username === 'string' ? body.username.trim() : '';
    const password = typeof body.password === 'string' ? body.password : '';
    if (body.role !== 'admin' && body.role !== 'member') {
      await renderPage(res, 400, 'Choose a role: member or admin.');
      return;
    }
    const role = body.role;
    try {
      const user = await users.create(username, password, role);
      logger.info(
        { event: 'user_created', userId: user.id, role, by: req.user?.id },
        'user created',
      );
      await renderPage(res, 201, undefined, `Added ${user.username} as ${role}.`);
    } catch (error) {
      if (!(error instanceof InvalidUserError)) throw error;
      await renderPage(res, 400, error.message);
    }
  });

  router.post('/admin/users/:id/delete', requireAdmin, csrfProtection, async (req, res) => {
    const id = req.params.id;
    if (id === req.user?.id) {
      await renderPage(res, 400, 'You cannot remove your own account while signed in with it.');
      return;
    }
    // Ids are UUIDs, so anything else needs no lookup. A NUL byte would make PostgreSQL fail.
    const target = USER_ID_PATTERN.test(String(id)) ? await users.findById(String(id)) : undefined;
    if (!target) {
      await renderPage(res, 404, 'That user no longer exists.');
      return;
    }
    if (target.role === 'admin' && (await users.countAdmins()) <= 1) {
      await renderPage(res, 400, 'The last administrator cannot be removed.');
      return;
    }
    await users.remove(target.id);
    logger.info({ event: 'user_removed', userId: target.id, by: req.user?.id }, 'user removed');
    await renderPage(res, 200, undefined, `Removed ${target.username}.`);
  });

  return router;
}
