import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import type { Express } from 'express';
import type session from 'express-session';
import type { Store as RateLimitStore } from 'express-rate-limit';
import { UserRepository } from './auth/user-repository';
import type { Config } from './config';
import { openDatabase, type DatabaseHandle } from './db/database';
import { DatabaseSessionStore } from './db/session-store';
import { connectRedisStores } from './db/redis-stores';
import { createProxyDelivery } from './images/proxy-delivery';
import type { Logger } from './logger';
import { startEmbeddedS3, EMBEDDED_S3_CREDENTIALS, type EmbeddedS3 } from './storage/embedded-s3';
import { createS3Client } from './storage/s3-client';
import { createUrlSigner, type UrlSigner } from './storage/url-signer';
import { createApp, type AppDependencies } from './web/app';
import { createMetrics } from './web/metrics';

export interface Runtime {
  app: Express;
  server: Server;
  /** Origin the app listens on, such as http://127.0.0.1:3000. */
  url: string;
  config: Config;
  database: DatabaseHandle;
  s3Client: S3Client;
  signer: UrlSigner;
  embeddedS3: EmbeddedS3 | undefined;
  sessionStore: session.Store;
  /** Stop accepting connections, then close the database and the embedded S3 server. */
  close(): Promise<void>;
}

export interface RuntimeOverrides {
  /**
   * Credentials for an external S3 endpoint. Default: the SDK's provider chain (AWS_* variables,
   * shared profile, IAM role), which is what production uses.
   */
  s3Credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider;
  /**
   * Extra routes behind the full session stack, behind the image route's session reader, or
   * both; see AppDependencies.extraRoutes and sessionReaderRoutes.
   */
  extraRoutes?: (parts: {
    s3Client: S3Client;
    signingClient: S3Client;
    database: DatabaseHandle;
    config: Config;
  }) => Pick<AppDependencies, 'extraRoutes' | 'sessionReaderRoutes'>;
}

/**
 * Read the session secret: SESSION_SECRET, else (embedded mode only) a secret generated on the
 * first start and kept in the data directory, so sessions survive restarts.
 */
function resolveSessionSecret(config: Config, logger: Logger): string {
  if (config.session.secret) return config.session.secret;
  // loadConfig rejects this already; the check stays for callers that build a Config themselves.
  if (config.databaseUrl) {
    throw new Error(
      'SESSION_SECRET is required with DATABASE_URL: every instance must sign cookies with the same ' +
        'secret. Set it to a random string of at least 32 characters (for example `openssl rand -hex 32`).',
    );
  }
  const file = path.join(config.dataDir, 'session-secret');
  fs.mkdirSync(config.dataDir, { recursive: true });
  try {
    // 'wx' fails if the file exists, so concurrent workers agree on the first secret written.
    fs.writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600, flag: 'wx' });
    logger.info({ file }, 'generated a session secret for embedded mode');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  return fs.readFileSync(file, 'utf8').trim();
}

/**
 * Create the first administrator when there is none. The password is ADMIN_PASSWORD, or a
 * generated one that is shown once on the terminal and kept in a file only the owner can read.
 * It never goes to the log.
 */
async function ensureAdmin(
  config: Config,
  users: UserRepository,
  logger: Logger,
): Promise<(() => void) | undefined> {
  if ((await users.countAdmins()) > 0) return undefined;
  const generated = config.admin.password === undefined;
  const password = config.admin.password ?? randomBytes(12).toString('base64url');
  let admin;
  try {
    admin = await users.create(config.admin.username, password, 'admin');
  } catch (error) {
    // Another worker or instance created the first administrator at the same moment.
    if ((await users.countAdmins()) > 0) return undefined;
    throw error;
  }
  logger.info(
    { event: 'admin_created', userId: admin.id, username: admin.username },
    'created the first administrator',
  );
  if (!generated) return undefined;

  const file = path.join(config.dataDir, 'initial-admin-password');
  fs.mkdirSync(config.dataDir, { recursive: true });
  fs.writeFileSync(file, `${password}\n`, { mode: 0o600 });
  const username = admin.username;
  // Returned rather than printed here, so the caller shows it last, where it is seen.
  return () => {
    process.stderr.write(
      `\n  First administrator: ${username}\n  Password: ${password}\n` +
        `  (shown once; also saved in ${file}. Change it with: npm run users -- reset-password ${username})\n\n`,
    );
  };
}

/**
 * Start everything the configuration requests: the embedded S3 server when no bucket is set,
 * the database with its migrations, the first admin, and the HTTP server.
 */
export async function startRuntime(
  config: Config,
  logger: Logger,
  overrides: RuntimeOverrides = {},
): Promise<Runtime> {
  const closers: (() => Promise<void>)[] = [];
  let announceAdmin: (() => void) | undefined;
  const closeAll = async () => {
    for (const close of closers.reverse()) await close();
  };

  try {
    // The data directory contains the SQLite file (password hashes, sessions) and the embedded
    // objects: only this user may read it. An existing directory keeps its permissions.
    if (config.s3.embedded || !config.databaseUrl) {
      fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    }
    let embeddedS3: EmbeddedS3 | undefined;
    let endpoint = config.s3.endpoint;
    let publicEndpoint = config.s3.publicEndpoint;
    if (config.s3.embedded) {
      embeddedS3 = await startEmbeddedS3({
        directory: path.join(config.dataDir, 's3'),
        bucket: config.s3.bucket,
        port: config.s3.embeddedPort,
      });
      closers.push(() => (embeddedS3 as EmbeddedS3).close());
      endpoint = embeddedS3.endpoint;
      publicEndpoint = undefined;
      const parts = config.databaseUrl ? 'S3 server runs' : 'S3 server and SQLite run';
      logger.warn(
        { s3Endpoint: endpoint, dataDir: config.dataDir },
        `embedded mode: ${parts} inside this process, for trying and developing only; ` +
          `data lives in ${config.dataDir}`,
      );
    }
    if (config.redirectCache.mode === 'aligned' && config.deliveryMode === 'proxy') {
      logger.warn(
        { redirectCache: 'aligned', deliveryMode: 'proxy' },
        'REDIRECT_CACHE=aligned has no effect in proxy mode, which sends no redirects',
      );
    }
    // A URL handed out in the last (margin - minimum validity) seconds of its window has no more
    // than the margin left, so its 302 is not cached. Rounding to whole seconds adds up to 1 s.
    const { marginSeconds } = config.redirectCache;
    const { windowSeconds, minValiditySeconds } = config.signedUrl;
    const uncachedSeconds = marginSeconds - minValiditySeconds;
    if (
      config.redirectCache.mode === 'aligned' &&
      config.deliveryMode === 'redirect' &&
      uncachedSeconds > 0
    ) {
      logger.warn(
        { redirectCache: 'aligned', marginSeconds, minValiditySeconds, uncachedSeconds },
        `REDIRECT_CACHE_MARGIN_SECONDS (${marginSeconds}) is over SIGNED_URL_MIN_VALIDITY_SECONDS ` +
          `(${minValiditySeconds}), so redirects are not cached in the last ${uncachedSeconds} s ` +
          `of each ${windowSeconds} s signing window; lower the margin to ${minValiditySeconds} ` +
          'or less, or raise SIGNED_URL_MIN_VALIDITY_SECONDS',
      );
    }

    const credentials = config.s3.embedded ? EMBEDDED_S3_CREDENTIALS : overrides.s3Credentials;
    const clientOptions = {
      region: config.s3.region,
      forcePathStyle: config.s3.forcePathStyle,
      credentials,
      connectTimeoutMs: config.s3.connectTimeoutMs,
      requestTimeoutMs: config.s3.requestTimeoutMs,
      maxSockets: config.s3.maxSockets,
    };
    const s3Client = createS3Client({ ...clientOptions, endpoint });
    closers.push(() => {
      s3Client.destroy();
      return Promise.resolve();
    });
    // The host is part of the signature, so URLs for browsers are signed for the public endpoint.
    const signingClient = publicEndpoint
      ? createS3Client({ ...clientOptions, endpoint: publicEndpoint })
      : s3Client;

    const signer = createUrlSigner({
      client: signingClient,
      bucket: config.s3.bucket,
      windowSeconds: config.signedUrl.windowSeconds,
      minValiditySeconds: config.signedUrl.minValiditySeconds,
      cacheSize: config.signedUrl.cacheSize,
      onLifetimeClamped: ({ lifetimeSeconds, credentialsExpireAt }) =>
        logger.warn(
          { event: 'url_lifetime_clamped', lifetimeSeconds, credentialsExpireAt },
          'signed URL lifetime shortened to the expiry of the temporary credentials',
        ),
      onFastPathDisabled: (reason) =>
        logger.warn(
          { event: 'fast_presign_disabled', reason },
          'built-in presigner disagrees with the AWS SDK; signing every URL with the SDK (slower, still correct)',
        ),
    });
    const imageOrigin = new URL(await signer.sign({ key: `${config.s3.keyPrefix}origin-probe` }))
      .origin;

    const database = await openDatabase({
      databaseUrl: config.databaseUrl,
      sqlitePath: path.join(config.dataDir, 's3gate.sqlite'),
      onIdleConnectionError: (error) =>
        logger.error(
          { err: error },
          'idle PostgreSQL connection failed; the pool will open a new one',
        ),
    });
    closers.push(() => database.close());

    let sessionStore: session.Store;
    let rateLimitStore: RateLimitStore | undefined;
    let sessionStoreCheck: (() => Promise<void>) | undefined;
    if (config.redis.url) {
      const redis = await connectRedisStores({
        url: config.redis.url,
        keyPrefix: config.redis.keyPrefix,
        sessionTtlSeconds: config.session.maxAgeSeconds,
        logger,
      });
      closers.push(() => redis.close());
      sessionStore = redis.sessionStore;
      sessionStoreCheck = () => redis.ping();
      rateLimitStore = redis.rateLimitStore;
    } else {
      const databaseStore = new DatabaseSessionStore(database.db, {
        defaultTtlMs: config.session.maxAgeSeconds * 1000,
        onPruneError: (error) => logger.error({ err: error }, 'could not delete expired sessions'),
      });
      closers.push(() => {
        databaseStore.close();
        return Promise.resolve();
      });
      sessionStore = databaseStore;
    }

    const sessionSecret = resolveSessionSecret(config, logger);

    const metrics = config.metrics.enabled
      ? createMetrics({ signer, token: config.metrics.token })
      : undefined;
    // Embedded mode also streams downloads through the app; see downloadsViaProxy.
    const proxy =
      config.deliveryMode === 'proxy' || config.s3.embedded
        ? createProxyDelivery({
            client: s3Client,
            bucket: config.s3.bucket,
            cacheMaxAgeSeconds: config.images.cacheMaxAgeSeconds,
            logger,
            onS3Error: metrics && ((failure) => metrics.countS3Error(failure, 'read')),
          })
        : undefined;

    const app = createApp({
      config,
      logger,
      database,
      s3Client,
      signer,
      imageOrigins: [imageOrigin],
      sessionStore,
      ...(sessionStoreCheck ? { sessionStoreCheck } : {}),
      sessionSecret,
      ...(proxy ? { proxy } : {}),
      ...(metrics ? { metrics } : {}),
      ...(rateLimitStore ? { rateLimitStore } : {}),
      ...overrides.extraRoutes?.({ s3Client, signingClient, database, config }),
    });

    // Before listen, so that no request can arrive before the first administrator exists.
    announceAdmin = await ensureAdmin(config, new UserRepository(database.db), logger);

    const server = await new Promise<Server>((resolve, reject) => {
      const listening = app.listen(config.port, config.host, (error?: Error) => {
        if (error) reject(error);
        else resolve(listening);
      });
    });
    closers.push(
      () =>
        new Promise<void>((resolve) => {
          // close() ends only the connections idle at that moment. One that finishes its request
          // later would stay open for the keep-alive timeout (5 s) and hold up the exit.
          const sweep = setInterval(() => server.closeIdleConnections(), 100);
          server.close(() => {
            clearInterval(sweep);
            resolve();
          });
          server.closeIdleConnections();
        }),
    );
    const address = server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const url = `http://${host}:${address.port}`;
    logger.info(
      { url, deliveryMode: config.deliveryMode, database: database.dialect },
      's3gate is listening',
    );
    announceAdmin?.();

    return {
      app,
      server,
      url,
      config,
      database,
      s3Client,
      signer,
      embeddedS3,
      sessionStore,
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    // The account exists now; a failed start must not lose its only copy on the terminal.
    announceAdmin?.();
    throw error;
  }
}
