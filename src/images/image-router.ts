import { create as createContentDisposition } from 'content-disposition';
import express, { type Request, type RequestHandler, type Response, type Router } from 'express';
import { errors } from '../errors';
import { presignedUrlExpiry, type ResponseOverrides, type UrlSigner } from '../storage/url-signer';
import { isImageId } from './image-id';
import type { ImageRecord } from './image-repository';

/** Exactly what the 302 carries: the redirect must never be cached, only the object it points to. */
export const REDIRECT_CACHE_CONTROL = 'private, no-cache, no-store, must-revalidate';

/** Serves one image in proxy mode; see proxy-delivery.ts. */
export type ProxyDelivery = (req: Request, res: Response, image: ImageRecord) => Promise<void>;

export interface ImageRouterOptions {
  /** Look up image metadata by id. Called only with ids that passed the format check. */
  findImage: (id: string) => Promise<ImageRecord | undefined>;
  /**
   * Decide whether the request's user may see the image. Return false to answer 404, the same as
   * for an unknown id, so a user cannot learn which ids exist. Default: any signed-in user.
   */
  authorize?: (req: Request, image: ImageRecord) => boolean | Promise<boolean>;
  /** Whether the request is signed in. Default: passport's `req.isAuthenticated()`. */
  isSignedIn?: (req: Request) => boolean;
  /** Where HTML navigations without a session go; `next` is added. Default "/login". */
  loginPath?: string;
  /** "redirect" (default) answers 302 to a signed URL; "proxy" streams the object. */
  mode?: 'redirect' | 'proxy';
  /** Required in redirect mode. */
  signer?: UrlSigner;
  /** Required in proxy mode. */
  proxy?: ProxyDelivery;
  /** max-age of the caching headers added to objects stored without them. */
  cacheMaxAgeSeconds: number;
  /**
   * Opt-in cached redirects: "aligned" lets the browser keep the 302 privately until the signed
   * URL expires, less `marginSeconds`, so a repeat view makes no request at all. The cost is a
   * longer revocation delay: a signed-out or removed user keeps seeing cached images until then.
   * Default "none": the 302 is never cached.
   */
  redirectCache?: { mode: 'none' | 'aligned'; marginSeconds: number };
  /** Clock in milliseconds, for tests. */
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
  req: Request,
  signer: UrlSigner,
  maxAge: number,
): ResponseOverrides {
  const overrides: ResponseOverrides = {};
  if (!image.hasCacheMetadata) {
    overrides.cacheControl = `private, max-age=${maxAge}, immutable`;
    overrides.expires = new Date((signer.windowStart() + maxAge) * 1000);
  }
  if (req.query.download !== undefined) overrides.contentDisposition = downloadDisposition(image);
  return overrides;
}

function wantsHtml(req: Request): boolean {
  return req.method === 'GET' && (req.get('accept') ?? '').includes('text/html');
}

/**
 * Create the router for `GET /image/:id` and `HEAD /image/:id`. It runs the checks in a fixed
 * order: session, id format, metadata and access rule, then delivery. Nothing reaches S3 until
 * all checks have passed.
 */
export function createImageRouter(options: ImageRouterOptions): Router {
  const mode = options.mode ?? 'redirect';
  if (mode === 'redirect' && !options.signer) {
    throw new TypeError('createImageRouter: redirect mode needs a `signer` (see createUrlSigner).');
  }
  if (mode === 'proxy' && !options.proxy) {
    throw new TypeError('createImageRouter: proxy mode needs a `proxy` delivery function.');
  }
  const isSignedIn = options.isSignedIn ?? ((req: Request) => req.isAuthenticated());
  const authorize = options.authorize ?? (() => true);
  const loginPath = options.loginPath ?? '/login';
  const aligned = options.redirectCache?.mode === 'aligned';
  const now = options.now ?? Date.now;

  const handler: RequestHandler = async (req, res) => {
    // Anonymous requests: never a URL, never a cacheable answer.
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
    if (!isImageId(id)) throw errors.imageNotFound();

    // Metadata and access rule: unknown and hidden give the same 404.
    const image = await options.findImage(id);
    if (!image || !(await authorize(req, image))) throw errors.imageNotFound();

    if (mode === 'proxy' && options.proxy) {
      await options.proxy(req, res, image);
      return;
    }

    const signer = options.signer as UrlSigner;
    const url = await signer.sign({
      key: image.key,
      method: req.method === 'HEAD' ? 'HEAD' : 'GET',
      overrides: overridesFor(image, req, signer, options.cacheMaxAgeSeconds),
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
    res.setHeader('X-Content-Type-Options', 'nosniff');
    // Set directly: res.location() would re-encode the already percent-encoded signed URL.
    res.setHeader('Location', url);
    res.setHeader('Content-Length', '0');
    res.end();
  };

  const router = express.Router();
  router.get('/image/:id', handler);
  router.head('/image/:id', handler);
  return router;
}
