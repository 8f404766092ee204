import express, { type Router } from 'express';
import type { Logger } from '../logger';

export interface HealthChecks {
  /** Each check rejects when its dependency is unreachable. */
  database: () => Promise<void>;
  storage: () => Promise<void>;
}

/** Create /healthz (the process responds) and /readyz (the database and S3 respond too). */
export function createHealthRoutes(checks: HealthChecks, logger: Logger): Router {
  const router = express.Router();

  router.get('/healthz', (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    const results = await Promise.allSettled([checks.database(), checks.storage()]);
    const [database, storage] = results.map((r) =>
      r.status === 'fulfilled' ? 'ok' : 'unavailable',
    );
    const ready = database === 'ok' && storage === 'ok';
    if (!ready) {
      const reasons = results.map((r) => (r.status === 'rejected' ? String(r.reason) : undefined));
      logger.warn({ event: 'not_ready', database, storage, reasons }, 'readiness check failed');
    }
    res.status(ready ? 200 : 503).json({ status: ready ? 'ok' : 'unavailable', database, storage });
  });

  return router;
}
