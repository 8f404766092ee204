import type { ErrorRequestHandler, Request } from 'express';
import createError from 'http-errors';
import { isHttpError, type HttpError } from '../errors';
import type { Logger } from '../logger';
import { issueCsrfToken } from './csrf';

const GENERIC_MESSAGE = 'Something went wrong on our side. Try again later.';

/** Errors raised by libraries that carry a safe client status: body parsers, CSRF, our catalogue. */
function toClientError(
  error: unknown,
  translate?: (error: unknown) => HttpError | undefined,
): HttpError {
  if (isHttpError(error)) return error;
  const translated = translate?.(error);
  if (translated) return translated;
  // Some libraries mark client errors with a bare `status`: Express's router sets 400 on the
  // URIError of a malformed %-escape in the path. Their messages may echo the request, so the
  // client gets the standard text for the status instead.
  const status = (error as { status?: unknown } | null)?.status;
  if (typeof status === 'number' && Number.isInteger(status) && status >= 400 && status < 500) {
    return createError(status);
  }
  return createError(500, 'Something went wrong on our side. Try again later.', {
    code: 'INTERNAL',
  });
}

function prefersJson(req: Request): boolean {
  const accept = req.get('accept') ?? '';
  return accept.includes('application/json') && !accept.includes('text/html');
}

/**
 * The one error handler: it logs server faults with the request id, hides their details behind
 * a generic message, and responds in the form the client expects. Image routes get a bare status
 * with a short text, scripts get JSON, and pages get the error page.
 */
export function createErrorHandler(
  logger: Logger,
  translate?: (error: unknown) => HttpError | undefined,
): ErrorRequestHandler {
  return (error: unknown, req, res, _next) => {
    const clientError = toClientError(error, translate);
    const status = clientError.status;

    // The client went away: there is no one to respond to, and nothing went wrong on our side.
    if (clientError.code === 'CLIENT_CLOSED_REQUEST') return;

    if (status >= 500) {
      const cause = (clientError as { cause?: unknown }).cause ?? error;
      logger.error(
        { err: cause, reqId: req.id, status, code: clientError.code as unknown },
        'request failed',
      );
    }

    // The response has started (a stream failed midway) or the socket is gone: end it, so the
    // client sees a cut response instead of a body that looks complete.
    if (res.headersSent || req.socket.destroyed) {
      if (!res.writableEnded) res.destroy();
      return;
    }

    const headers = (clientError.headers ?? {}) as Record<string, string>;
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    res.status(status);

    if (status === 304) {
      res.end();
      return;
    }

    // A 5xx with a code from our catalogue has a safe message; any other 5xx gets the generic one.
    const safe = clientError.expose || typeof clientError.code === 'string';
    const message = safe ? clientError.message : GENERIC_MESSAGE;

    if (req.path.startsWith('/image/')) {
      res.setHeader('Cache-Control', 'no-store');
      res.type('text/plain').send(req.method === 'HEAD' ? undefined : `${message}\n`);
      return;
    }
    if (prefersJson(req)) {
      res.json({ error: { status, code: clientError.code as unknown, message } });
      return;
    }
    // The page header has a sign-out form, which needs the session's CSRF token.
    if (typeof req.isAuthenticated === 'function' && req.isAuthenticated())
      issueCsrfToken(req, res);
    res.render('error', { title: `Error ${status}`, status, message });
  };
}
