import { create as createContentDisposition } from 'content-disposition';
import express, { type Request, type RequestHandler, type Response, type Router } from 'express';
import { errors } from '../errors';
import { checkFunction, checkInteger, checkOneOf } from '../option-checks';
import { presignedUrlExpiry, type ResponseOverrides, type UrlSigner } from '../storage/url-signer';
import { isImageId } from './image-id';
import type { ImageRecord } from './image-repository';

/** Exactly what the 302 carries: the redirect must never be cached, only the object it points to. */
export const REDIRECT_CACHE_CONTROL = 'private, no-cache, no-store, must-revalidate';

/**
 * Serves one image in proxy mode, after the router has checked the session, the id and the access
 * rule. `createProxyDelivery` makes one.
 */
export type ProxyDelivery = (req: Request, res: Response, image: ImageRecord) => Promise<void>;

/** Options of `createImageRouter`. */
export interface ImageRouterOptions {
  /**
   * Look up image metadata by id; resolve undefined for an unknown id. Called only with ids that
   * passed `isValidId`, and only for signed-in requests.
   */
  findImage: (id: string) => Promise<ImageRecord | undefined>;
  /**
   * Decide whether the request's user may see the image. Return false to respond 404, the same as
   * for an unknown id, so a user cannot learn which ids exist. Default: any signed-in user.
   */
  authorize?: (req: Request, image: ImageRecord) => boolean | Promise<boolean>;
  /**
   * Whether the request is signed in. False gives 401, or 303 to `loginPath` for a browser
   * navigation. Default: passport's `req.isAuthenticated()`, so an app without passport must
   * pass its own check.
   */
  isSignedIn?: (req: Request) => boolean;
  /**
   * Format check for ids in the URL, run before `findImage`; a mismatch is the same 404 as an
   * unknown id. Default: the 22-character base64url ids that `newImageId` makes.
   */
  isValidId?: (id: string) => boolean;
  /** Same-origin path where HTML navigations without a session go; `next` is added. Default "/login". */
  loginPath?: string;
  /** "redirect" (default) responds with 302 to a signed URL; "proxy" streams the object through the app. */
  mode?: 'redirect' | 'proxy';
  /** Signer from `createUrlSigner`. Required in redirect mode. */
  signer?: UrlSigner;
  /** Delivery from `createProxyDelivery`. Required in proxy mode. */
  proxy?: ProxyDelivery;
  /**
   * In redirect mode, stream `?download` requests through `proxy` instead of signing a
   * `response-content-disposition`. For S3 emulators that reject such signatures (the embedded
   * @20minutes/s3rver 4.0.4 re-encodes the `'` of `filename*=UTF-8''…` differently from AWS).
   * Default false.
   */
  downloadsViaProxy?: boolean;
  /**
   * `max-age` in seconds of the caching headers that signed URLs add for objects stored without
   * them (`hasCacheMetadata: false`). s3gate uses 31536000 (one year).
   */
  cacheMaxAgeSeconds: number;
  /**
   * Opt-in cached redirects: "aligned" lets the browser keep the 302 privately until the signed
   * URL expires, less `marginSeconds`, so a repeat view makes no request at all. The cost is a
   * longer revocation delay: a signed-out or removed user keeps seeing cached images until then.
   * Default "none": the 302 is never cached.
   */
  redirectCache?: { mode: 'none' | 'aligned'; marginSeconds: number };
  /** Clock in milliseconds since the epoch. Default `Date.now`; tests move it. */
  now?: () => number;
}

/** Build the Content-Disposition for a download: ASCII fallback plus RFC 5987 filename*. */
export function downloadDisposition(image: ImageRecord): string {
  return createContentDisposition(image.originalName, { type: 'attachment' });
}

/**
 * Response overrides for the signed URL. Objects uploaded by s3gate carry their own caching
 * headers; objects stored without them get the same headers through `response-*` parameters.
 * The Expires value is derived from the window start, so it is the same all window long and
 * the URL stays byte-identical.
 */
function overridesFor(
  image: ImageRecord,
  download: boolean,
  signer: UrlSigner,
  maxAge: number,
): ResponseOverrides {
  const overrides: ResponseOverrides = {};
  if (!image.hasCacheMetadata) {
    overrides.cacheControl = `private, max-age=${maxAge}, immutable`;
    overrides.expires = new Date((signer.windowStart() + maxAge) * 1000);
  }
  if (download) overrides.contentDisposition = downloadDisposition(image);
  return overrides;
}

function wantsHtml(req: Request): boolean {
  return req.method === 'GET' && (req.get('accept') ?? '').includes('text/html');
}

const FACTORY = 'createImageRouter';

/** Check the options once, at construction; returns the delivery mode. */
function checkRouterOptions(options: ImageRouterOptions): 'redirect' | 'proxy' {
  // Hooks
  checkFunction(FACTORY, 'findImage', options.findImage, {
    hint: 'Pass a function that resolves the ImageRecord for an id, or undefined.',
  });
  checkFunction(FACTORY, 'authorize', options.authorize, { optional: true });
  checkFunction(FACTORY, 'isSignedIn', options.isSignedIn, { optional: true });
  checkFunction(FACTORY, 'isValidId', options.isValidId, { optional: true });
  checkFunction(FACTORY, 'now', options.now, { optional: true });

  // Delivery
  const mode = checkOneOf(FACTORY, 'mode', options.mode, ['redirect', 'proxy']) ?? 'redirect';
  if (mode === 'redirect' && !options.signer) {
    throw new TypeError(
      `${FACTORY}: redirect mode needs a \`signer\`. Create one with createUrlSigner, or set mode: "proxy".`,
    );
  }
  if (mode === 'proxy' && !options.proxy) {
    throw new TypeError(
      `${FACTORY}: proxy mode needs a \`proxy\` delivery function. Create one with createProxyDelivery.`,
    );
  }
  checkInteger(FACTORY, 'cacheMaxAgeSeconds', options.cacheMaxAgeSeconds, {
    hint: 'Use the max-age of the objects in seconds, such as 31536000.',
  });
  if (options.redirectCache !== undefined) {
    checkOneOf(FACTORY, 'redirectCache.mode', options.redirectCache.mode, ['none', 'aligned']);
    checkInteger(FACTORY, 'redirectCache.marginSeconds', options.redirectCache.marginSeconds, {
      min: 0,
    });
  }

  // Login redirect: a path on this site only, so it cannot send users to another origin.
  const loginPath: unknown = options.loginPath;
  // Browsers read "//host" and "/\host" as another origin.
  const isLocalPath = typeof loginPath === 'string' && /^\/(?![/\\])/.test(loginPath);
  if (loginPath !== undefined && !isLocalPath) {
    throw new TypeError(
      `${FACTORY}: \`loginPath\` must be a path on this site starting with one "/", got ${JSON.stringify(loginPath)}.`,
    );
  }
  return mode;
}

/** Check passport's session, as the default `isSignedIn`, with a clear error when passport is missing. */
function isAuthenticatedByPassport(req: Request): boolean {
  // Without passport, req.isAuthenticated is missing and the call would fail as "not a function".
  if (typeof (req as Partial<Request>).isAuthenticated !== 'function') {
    throw new TypeError(
      `${FACTORY}: req.isAuthenticated() is missing because passport is not mounted before the router. ` +
        'Pass an `isSignedIn(req)` option that uses your own login.',
    );
  }
  return req.isAuthenticated();
}

/**
 * Create the handler of `GET /image/:id` and `HEAD /image/:id`, for mounting on a route with an
 * `:id` parameter; `createImageRouter` describes what it does. An app that mounts the route
 * itself saves the router's own dispatch on every image request.
 *
 * @throws TypeError at construction for a missing or invalid option.
 */
export function createImageHandler(options: ImageRouterOptions): RequestHandler {
  const mode = checkRouterOptions(options);
  const isSignedIn = options.isSignedIn ?? isAuthenticatedByPassport;
  const isValidId = options.isValidId ?? isImageId;
  const authorize = options.authorize ?? (() => true);
  const loginPath = options.loginPath ?? '/login';
  const aligned = options.redirectCache?.mode === 'aligned';
  const now = options.now ?? Date.now;

  return async (req, res) => {
    // Anonymous requests: never a URL, never a cacheable response.
    if (!isSignedIn(req)) {
      res.setHeader('Cache-Control', 'no-store');
      if (wantsHtml(req)) {
        res.redirect(303, `${loginPath}?next=${encodeURIComponent(req.originalUrl)}`);
        return;
      }
      throw errors.loginRequired();
    }

    // Id format, before any lookup.
    const id = req.params.id;
    if (typeof id !== 'string' || !isValidId(id)) throw errors.imageNotFound();

    // Metadata and access rule: unknown and hidden give the same 404.
    const image = await options.findImage(id);
    if (!image || !(await authorize(req, image))) throw errors.imageNotFound();

    // Express parses the query string again on every read of req.query.
    const download = req.query.download !== undefined;
    const viaProxy = mode === 'proxy' || (options.downloadsViaProxy === true && download);
    if (viaProxy && options.proxy) {
      await options.proxy(req, res, image);
      return;
    }

    const signer = options.signer as UrlSigner;
    const url = await signer.sign({
      key: image.key,
      method: req.method === 'HEAD' ? 'HEAD' : 'GET',
      overrides: overridesFor(image, download, signer, options.cacheMaxAgeSeconds),
      cacheUntilExpiry: aligned,
    });
    res.status(302);
    const cacheSeconds = aligned
      ? Math.floor((presignedUrlExpiry(url) - now()) / 1000) -
        (options.redirectCache?.marginSeconds ?? 0)
      : 0;
    if (cacheSeconds > 0) {
      res.setHeader('Cache-Control', `private, max-age=${cacheSeconds}`);
    } else {
      res.setHeader('Cache-Control', REDIRECT_CACHE_CONTROL);
      res.setHeader('Pragma', 'no-cache');
      res.setHeader('Expires', '0');
    }
    // Apps that mount helmet have set it already. Each setHeader validates its value again.
    if (!res.hasHeader('X-Content-Type-Options'))
      res.setHeader('X-Content-Type-Options', 'nosniff');
    // Set directly: res.location() would re-encode the already percent-encoded signed URL.
    res.setHeader('Location', url);
    // Node sends Content-Length: 0 for a GET that ends without a body, but nothing for HEAD.
    if (req.method === 'HEAD') res.setHeader('Content-Length', '0');
    res.end();
  };
}

/**
 * Create the router for `GET /image/:id` and `HEAD /image/:id`. It runs the checks in a fixed
 * order: session, id format, metadata and access rule, then delivery. Nothing reaches S3 until
 * all checks have passed.
 *
 * Rejections are not sent by the router: it passes errors from `errors` (401, 404, and in proxy
 * mode 412, 416, 502, 503, 504) to `next`, each with `status`, `expose`, a stable `code` and
 * sometimes `headers` such as `Retry-After`. Mount `createBlockErrorHandler()` after the router,
 * or an error handler of your own that sends those.
 *
 * @throws TypeError at construction for a missing or invalid option.
 */
export function createImageRouter(options: ImageRouterOptions): Router {
  const handler = createImageHandler(options);
  const router = express.Router();
  router.get('/image/:id', handler);
  router.head('/image/:id', handler);
  return router;
}
