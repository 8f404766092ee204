import type { ErrorRequestHandler, Request } from 'express';
import { isHttpError } from '../errors';
import { checkFunction } from '../option-checks';

/** Options of `createBlockErrorHandler`. */
export interface BlockErrorHandlerOptions {
  /**
   * Called for every 5xx, with the original error (an S3 or database error, say) and the request,
   * so the host app can log it. The client only sees the safe message. Default: ignore.
   */
  onServerError?: (error: unknown, req: Request) => void;
}

const GENERIC_MESSAGE = 'Something went wrong on our side. Try again later.';

function prefersJson(req: Request): boolean {
  const accept = req.get('accept') ?? '';
  return accept.includes('application/json') && !accept.includes('text/html');
}

/**
 * Create an Express error handler for the errors that the image router and the upload handler
 * pass to `next`. It sends the error's status and headers (such as `Retry-After`), with
 * `Cache-Control: no-store`, and the error's safe message as JSON for clients that ask for JSON or
 * as plain text otherwise. Any other error becomes a 500 with a generic message.
 *
 * Mount it after the blocks. An app with its own error handler can use that one instead: it must
 * send `err.status` and `err.headers`, and never cache the error.
 */
export function createBlockErrorHandler(
  options: BlockErrorHandlerOptions = {},
): ErrorRequestHandler {
  checkFunction('createBlockErrorHandler', 'onServerError', options.onServerError, {
    optional: true,
  });

  return (error: unknown, req, res, _next) => {
    const httpError = isHttpError(error) ? error : undefined;
    const status = httpError?.status ?? 500;

    // The client went away (499), so there is no one to respond to, and nothing failed on our side.
    if (status === 499) return;

    if (status >= 500) options.onServerError?.(httpError?.cause ?? error, req);

    // A proxied image stream failed after its headers were sent: cut the response, so the client
    // sees a broken transfer instead of a body that looks complete.
    if (res.headersSent || req.socket.destroyed) {
      if (!res.writableEnded) res.destroy();
      return;
    }

    const headers = (httpError?.headers ?? {}) as Record<string, string>;
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    res.setHeader('Cache-Control', 'no-store');
    res.status(status);

    // S3's 304 reaches here as an error in proxy mode; a 304 has no body.
    if (status === 304) {
      res.end();
      return;
    }

    const message = httpError?.expose ? httpError.message : GENERIC_MESSAGE;
    if (prefersJson(req)) {
      res.json({ error: { status, code: (httpError?.code as unknown) ?? 'INTERNAL', message } });
      return;
    }
    // Express sends no body for HEAD.
    res.type('text/plain').send(`${message}\n`);
  };
}
