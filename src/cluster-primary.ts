import cluster, { type Worker } from 'node:cluster';
import type { Logger } from './logger';

/** Restarts allowed per minute before the primary gives up, so a crash loop does not spin forever. */
const MAX_RESTARTS_PER_MINUTE = 10;

/**
 * Run the cluster primary: fork `workers` processes that each run the full app on the shared
 * port, replace workers that die, and on SIGTERM or SIGINT pass the signal on and exit once
 * every worker has finished its shutdown.
 */
export function runClusterPrimary(workers: number, logger: Logger): void {
  let stopping = false;
  const restarts: number[] = [];

  const fork = (): Worker => {
    const worker = cluster.fork();
    logger.info({ workerPid: worker.process.pid }, 'worker started');
    return worker;
  };

  cluster.on('exit', (worker, code, signal) => {
    const alive = Object.keys(cluster.workers ?? {}).length;
    if (stopping) {
      logger.info({ workerPid: worker.process.pid, code, signal }, 'worker stopped');
      if (alive === 0) process.exit(0);
      return;
    }
    logger.error(
      { workerPid: worker.process.pid, code, signal },
      'worker died; starting a new one',
    );
    const now = Date.now();
    restarts.push(now);
    while (restarts.length > 0 && (restarts[0] ?? 0) < now - 60_000) restarts.shift();
    if (restarts.length > MAX_RESTARTS_PER_MINUTE) {
      logger.fatal(
        { restarts: restarts.length },
        'workers keep dying; stopping. Check the worker logs above.',
      );
      process.exit(1);
    }
    fork();
  });

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping all workers');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  for (let i = 0; i < workers; i += 1) fork();
}
