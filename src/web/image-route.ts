import type { Express, RequestHandler } from 'express';
import type session from 'express-session';
import type { createSessionUserLoader } from '../auth/passport-setup';
import { createSessionReader } from '../auth/session-reader';
import type { Config } from '../config';
import { canView } from '../images/access-rule';
import type { ImageRepository } from '../images/image-repository';
import { createImageHandler, type ProxyDelivery } from '../images/image-router';
import type { UrlSigner } from '../storage/url-signer';

export interface ImageRouteOptions {
  config: Config;
  images: ImageRepository;
  signer: UrlSigner;
  proxy?: ProxyDelivery | undefined;
  sessionStore: session.Store;
  sessionSecret: string;
  cookieName: string;
  loadUser: ReturnType<typeof createSessionUserLoader>;
  /** Other GET routes to mount the same way, behind the same session reader. */
  readerRoutes?: { path: string; handler: RequestHandler }[] | undefined;
}

/**
 * Mount `GET /image/:id` (and HEAD, and OPTIONS) on the app, with the read-only session reader
 * in front instead of express-session and passport. A page with fifty images makes fifty
 * requests here, and each needs only the user, which the reader gives for a fraction of the
 * cost. Mount it before express-session, so those requests skip it.
 */
export function mountImageRoute(app: Express, options: ImageRouteOptions): void {
  const { config } = options;
  const readSession = createSessionReader({
    store: options.sessionStore,
    secret: options.sessionSecret,
    cookieName: options.cookieName,
    loadUser: (stored) => options.loadUser(stored.passport?.user, stored.signedInAt),
  });
  const imageHandler = createImageHandler({
    mode: config.deliveryMode,
    signer: options.signer,
    ...(options.proxy ? { proxy: options.proxy } : {}),
    findImage: (id) => options.images.findById(id),
    isSignedIn: (req) => req.user !== undefined,
    authorize: (req, image) => (req.user ? canView(req.user, image) : false),
    cacheMaxAgeSeconds: config.images.cacheMaxAgeSeconds,
    redirectCache: config.redirectCache,
    downloadsViaProxy: config.s3.embedded && config.deliveryMode === 'redirect',
  });

  // app.get also takes HEAD. OPTIONS gets the response Express's router sends for a route of its
  // own. Other methods go on to the full session stack.
  app.get('/image/:id', readSession, imageHandler);
  app.options('/image/:id', (_req, res) => {
    res.setHeader('Allow', 'GET, HEAD');
    res.setHeader('Cache-Control', 'no-store');
    res.type('text/plain').send('GET, HEAD');
  });
  for (const route of options.readerRoutes ?? []) app.get(route.path, readSession, route.handler);
}
