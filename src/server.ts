import cluster from 'node:cluster';
import { runClusterPrimary } from './cluster-primary';
import { ConfigError, loadConfig } from './config';
import { createLogger } from './logger';
import { startRuntime } from './runtime';

async function main(): Promise<void> {
  // The AWS SDK warns at its first client that Node 20 support ends in January 2027. The lock
  // file pins a version that supports it, so the warning only adds noise to every start.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(
        `${error.message}\nFix these variables and start again; the README lists them all.\n`,
      );
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);
  if (config.webConcurrency > 1 && cluster.isPrimary) {
    runClusterPrimary(config.webConcurrency, logger);
    return;
  }
  const runtime = await startRuntime(config, logger);

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // Open requests (an upload in progress, say) get this long to finish.
    const deadline = setTimeout(() => {
      logger.error(
        { deadlineMs: config.shutdownTimeoutMs },
        'shutdown deadline passed; exiting with requests still open',
      );
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    runtime
      .close()
      .then(() => {
        logger.info('stopped');
        process.exit(0);
      })
      .catch((error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `s3gate failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(1);
});
