import path from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import express, { type Express } from 'express';
import { rateLimit, type Store as RateLimitStore } from 'express-rate-limit';
import session from 'express-session';
import { createAuthRoutes } from '../auth/auth-routes';
import { createPassport, createSessionUserLoader } from '../auth/passport-setup';
import { UserRepository } from '../auth/user-repository';
import { createUsersRoutes } from '../auth/users-routes';
import type { Config } from '../config';
import type { DatabaseHandle } from '../db/database';
import { errors } from '../errors';
import { createAdminImageRoutes } from '../images/admin-routes';
import { ImageRepository } from '../images/image-repository';
import type { ProxyDelivery } from '../images/image-router';
import type { Logger } from '../logger';
import { translateDatabaseError } from '../db/database-errors';
import { translateRedisError } from '../db/redis-stores';
import { translateS3Error } from '../storage/s3-errors';
import { checkStorage } from '../storage/storage-check';
import type { UrlSigner } from '../storage/url-signer';
import { createErrorHandler } from './error-handler';
import { createGalleryRoutes } from './gallery-routes';
import { createHealthRoutes } from './health-routes';
import { mountImageRoute } from './image-route';
import type { Metrics } from './metrics';
import { createRequestLogger } from './request-logger';
import { createSecurityHeaders } from './security-headers';

export const SESSION_COOKIE_NAME = 's3gate.sid';
const VIEWS_DIR = path.join(__dirname, '..', '..', 'views');

/** Everything the app needs from outside; createApp itself opens nothing and starts nothing. */
export interface AppDependencies {
  config: Config;
  logger: Logger;
  database: DatabaseHandle;
  /** Client for uploads, deletes, reads and health checks. */
  s3Client: S3Client;
  /** Signer for redirect mode, bound to the endpoint browsers reach. */
  signer: UrlSigner;
  /** Origins of signed URLs, allowed as image sources in the CSP. */
  imageOrigins: string[];
  sessionStore: session.Store;
  /** Readiness check of the session store when it is a service of its own (Redis). */
  sessionStoreCheck?: () => Promise<void>;
  sessionSecret: string;
  /** Required when config.deliveryMode is "proxy". */
  proxy?: ProxyDelivery;
  /** Store for the failed-login limit; default in memory (one process only). */
  rateLimitStore?: RateLimitStore;
  /** Metrics of this instance, served at /metrics; without them there is no /metrics. */
  metrics?: Metrics;
  /**
   * Routes mounted after the session and passport middleware. The benchmarks use it for baseline
   * routes behind that stack; apps can add their own pages.
   */
  extraRoutes?: express.Router;
  /**
   * GET routes mounted exactly like the image route: before express-session and passport, each
   * behind the same read-only session reader. `req.user` is set for a signed-in session;
   * `req.session` does not exist. The benchmarks use it for baseline routes.
   */
  sessionReaderRoutes?: { path: string; handler: express.RequestHandler }[];
}

/** Assemble the full s3gate web app from its dependencies. */
export function createApp(deps: AppDependencies): Express {
  const { config, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  // Pages are no-store and images carry their own validators; ETags on error text would mislead.
  app.set('etag', false);
  app.set('trust proxy', config.trustProxy);
  app.set('view engine', 'ejs');
  app.set('views', VIEWS_DIR);

  const images = new ImageRepository(deps.database.db);
  const users = new UserRepository(deps.database.db);
  const loadUser = createSessionUserLoader(users, config.session.maxAgeSeconds * 1000);
  const passport = createPassport(users, loadUser);

  if (deps.metrics) app.use(deps.metrics.countRequests);

  app.use(createRequestLogger(logger));
  app.use(createSecurityHeaders(deps.imageOrigins));

  // Right after metrics, logging and headers, and before express-session and passport.
  mountImageRoute(app, {
    config,
    images,
    signer: deps.signer,
    proxy: deps.proxy,
    sessionStore: deps.sessionStore,
    sessionSecret: deps.sessionSecret,
    cookieName: SESSION_COOKIE_NAME,
    loadUser,
    readerRoutes: deps.sessionReaderRoutes,
  });

  app.use('/assets', express.static(path.join(VIEWS_DIR, 'assets'), { maxAge: '1h' }));

  app.use(
    createHealthRoutes(
      {
        database: () => deps.database.ping(),
        storage: () =>
          checkStorage(deps.s3Client, config.s3.bucket, `${config.s3.keyPrefix}.readiness-probe`),
        ...(deps.sessionStoreCheck ? { sessions: deps.sessionStoreCheck } : {}),
      },
      logger,
    ),
  );

  // Before the session, so that scrapes never create sessions or touch the database.
  if (deps.metrics) app.use(deps.metrics.router);

  app.use(
    session({
      name: SESSION_COOKIE_NAME,
      secret: deps.sessionSecret,
      store: deps.sessionStore,
      resave: false,
      saveUninitialized: false,
      cookie: {
        httpOnly: true,
        sameSite: 'lax',
        // Secure whenever the request arrived over TLS, which behind a proxy needs TRUST_PROXY.
        secure: 'auto',
        maxAge: config.session.maxAgeSeconds * 1000,
      },
    }),
  );
  app.use(passport.initialize());
  app.use(passport.session());
  app.use(express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 20 }));
  app.use((req, res, next) => {
    // Pages carry per-user data and CSRF tokens, so no cache may keep them. The image routes
    // replace this with their own caching headers.
    res.setHeader('Cache-Control', 'no-store');
    res.locals.user = req.user;
    res.locals.title = 's3gate';
    next();
  });

  if (deps.extraRoutes) app.use(deps.extraRoutes);

  const loginLimiter = rateLimit({
    windowMs: config.login.failureWindowSeconds * 1000,
    limit: config.login.maxFailures,
    skipSuccessfulRequests: true,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    ...(deps.rateLimitStore ? { store: deps.rateLimitStore } : {}),
    handler: (req, res) => {
      logger.warn({ event: 'login_rate_limited', ip: req.ip }, 'too many failed logins');
      res.status(429).render('login', {
        title: 'Sign in',
        next: '/',
        username: '',
        error: 'Too many failed sign-in attempts. Wait a few minutes and try again.',
        csrfToken: undefined,
      });
    },
  });
  app.use(createAuthRoutes({ passport, logger, loginLimiter, cookieName: SESSION_COOKIE_NAME }));
  app.use(createGalleryRoutes(images));
  if (deps.metrics) app.post('/admin/images', deps.metrics.observeUploads);
  app.use(
    createAdminImageRoutes({
      images,
      client: deps.s3Client,
      bucket: config.s3.bucket,
      keyPrefix: config.s3.keyPrefix,
      maxBytes: config.images.maxBytes,
      cacheMaxAgeSeconds: config.images.cacheMaxAgeSeconds,
      logger,
      onS3Error: deps.metrics && ((failure) => deps.metrics?.countS3Error(failure, 'write')),
    }),
  );
  app.use(createUsersRoutes(users, logger));

  app.use(() => {
    throw errors.pageNotFound();
  });
  app.use(
    createErrorHandler(logger, (error) => {
      const unavailable = translateDatabaseError(error) ?? translateRedisError(error);
      if (unavailable) return unavailable;
      // An SDK error that no route translated itself comes from a write (upload, delete).
      const isS3Error = typeof error === 'object' && error !== null && '$metadata' in error;
      return isS3Error ? translateS3Error(error, 'write') : undefined;
    }),
  );
  return app;
}
