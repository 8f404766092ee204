import { parse as parseCookies } from 'cookie';
import { unsign } from 'cookie-signature';
import type { RequestHandler } from 'express';
import type session from 'express-session';
import { LRUCache } from 'lru-cache';

/** Options of `createSessionReader`. */
export interface SessionReaderOptions {
  /** The store that express-session writes to. */
  store: session.Store;
  /** express-session's `secret`: one secret, or several while rotating (the first one signs). */
  secret: string | string[];
  /** express-session's `name`. */
  cookieName: string;
  /**
   * Turn a stored session into its user; resolve undefined when it has none or may no longer
   * use it. s3gate passes the same check that passport's deserializer runs.
   */
  loadUser: (stored: session.SessionData) => Promise<Express.User | undefined>;
}

/**
 * Create middleware that reads express-session's sessions without changing them, for requests
 * that only need to know who is asking. It reads the same signed cookie from the same store. It
 * sets `req.user` when the session belongs to a user who may still use it, and otherwise leaves
 * `req.user` unset.
 *
 * The image route is called once per <img> on a page, and express-session plus passport cost
 * more per request than everything else on that route together: they build session and cookie
 * objects, hash the session to detect changes and hook the response to save it. A request that
 * only reads a session needs none of that. Revocation is unchanged, because every request reads
 * the store: a signed-out or deleted session stops working at once.
 *
 * The reader never writes, not even express-session's touch, which moves the session's expiry
 * in the store forward on each unchanged request. Image requests therefore do not extend a
 * session; page requests still do.
 */
export function createSessionReader(options: SessionReaderOptions): RequestHandler {
  const secrets = Array.isArray(options.secret) ? options.secret : [options.secret];
  if (secrets.length === 0 || secrets.some((s) => typeof s !== 'string' || s === '')) {
    throw new TypeError(
      'createSessionReader: `secret` is missing or empty. Pass the secret, or the array of secrets, that express-session uses.',
    );
  }

  // A page's images all arrive with the same cookie, and checking its HMAC each time was a
  // visible share of the route's CPU time. The result depends only on the cookie and the
  // secrets, so a verified cookie can be remembered. The store is still read on every request.
  const verified = new LRUCache<string, string>({ max: 10_000 });

  return (req, _res, next) => {
    const sid = readSessionId(req.headers.cookie, options.cookieName, secrets, verified);
    if (sid === undefined) {
      next();
      return;
    }
    options.store.get(sid, (error: unknown, stored?: session.SessionData | null) => {
      if (error) {
        next(error);
        return;
      }
      if (!stored) {
        next();
        return;
      }
      options.loadUser(stored).then(
        (user) => {
          if (user) req.user = user;
          next();
        },
        (loadError: unknown) => {
          next(loadError);
        },
      );
    });
  };
}

/**
 * Extract the session id from express-session's cookie. Returns undefined when the cookie is
 * missing, unsigned or signed with none of the secrets, because express-session ignores it then.
 */
export function readSessionId(
  header: string | undefined,
  cookieName: string,
  secrets: readonly string[],
  verified?: LRUCache<string, string>,
): string | undefined {
  if (!header) return undefined;
  const value = parseCookies(header)[cookieName];
  if (value?.startsWith('s:') !== true) return undefined;

  const known = verified?.get(value);
  if (known !== undefined) return known;
  for (const secret of secrets) {
    const sid = unsign(value.slice(2), secret);
    if (sid !== false) {
      verified?.set(value, sid);
      return sid;
    }
  }
  return undefined;
}
