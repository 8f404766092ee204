import express, { type Router } from 'express';
import type { Logger } from '../logger';

export interface HealthChecks {
  /** Each check rejects when its dependency is unreachable. */
  database: () => Promise<void>;
  storage: () => Promise<void>;
  /** The session store, when it is a service of its own (Redis). */
  sessions?: () => Promise<void>;
}

/**
 * Create /healthz (the process responds) and /readyz (the database, S3 and, when configured,
 * the session store respond too).
 */
export function createHealthRoutes(checks: HealthChecks, logger: Logger): Router {
  const router = express.Router();
  const named = Object.entries(checks).filter(
    (entry): entry is [string, () => Promise<void>] => typeof entry[1] === 'function',
  );

  router.get('/healthz', (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    const results = await Promise.allSettled(named.map(([, check]) => check()));
    const states: Record<string, 'ok' | 'unavailable'> = {};
    const reasons: Record<string, string> = {};
    results.forEach((result, i) => {
      const name = named[i]?.[0] ?? String(i);
      states[name] = result.status === 'fulfilled' ? 'ok' : 'unavailable';
      if (result.status === 'rejected') reasons[name] = String(result.reason);
    });
    const ready = Object.values(states).every((state) => state === 'ok');
    if (!ready) logger.warn({ event: 'not_ready', ...states, reasons }, 'readiness check failed');
    res.status(ready ? 200 : 503).json({ status: ready ? 'ok' : 'unavailable', ...states });
  });

  return router;
}
