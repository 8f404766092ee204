import createError, { HttpError } from 'http-errors';

/**
 * The error catalogue: every error s3gate raises on purpose, with its status and a stable code.
 * Messages are safe to show to the client; internal details go to the log only.
 */
export const errors = {
  imageNotFound: () =>
    createError(404, 'Image not found.', { code: 'IMAGE_NOT_FOUND', expose: true }),
  pageNotFound: () => createError(404, 'Page not found.', { code: 'PAGE_NOT_FOUND', expose: true }),
  loginRequired: () =>
    createError(401, 'You are not signed in. Sign in and try again.', {
      code: 'LOGIN_REQUIRED',
      expose: true,
    }),
  adminRequired: () =>
    createError(403, 'This page is for administrators only.', {
      code: 'ADMIN_REQUIRED',
      expose: true,
    }),
  csrfInvalid: () =>
    createError(403, 'The form expired or came from another site. Reload the page and try again.', {
      code: 'CSRF_INVALID',
      expose: true,
    }),
  uploadTooLarge: (maxBytes: number) =>
    createError(413, `The file is larger than the limit of ${formatBytes(maxBytes)}.`, {
      code: 'UPLOAD_TOO_LARGE',
      expose: true,
    }),
  unsupportedImageType: (accepted: readonly string[]) =>
    createError(415, `The file is not a supported image. Accepted types: ${accepted.join(', ')}.`, {
      code: 'UNSUPPORTED_IMAGE_TYPE',
      expose: true,
    }),
  /** A file of an accepted type that is not one complete image; detail is a sentence about why. */
  invalidImage: (detail: string) =>
    createError(422, `The file is not a complete, valid image: ${detail}`, {
      code: 'INVALID_IMAGE',
      expose: true,
    }),
  badUpload: (detail: string) =>
    createError(400, `The upload could not be read: ${detail}`, {
      code: 'BAD_UPLOAD',
      expose: true,
    }),
  badRequest: (detail: string) => createError(400, detail, { code: 'BAD_REQUEST', expose: true }),
  storageUnavailable: () =>
    createError(503, 'Image storage is unavailable. Try again shortly.', {
      code: 'STORAGE_UNAVAILABLE',
      expose: true,
      headers: { 'Retry-After': '5' },
    }),
  storageTimeout: () =>
    createError(504, 'Image storage did not respond in time. Try again shortly.', {
      code: 'STORAGE_TIMEOUT',
      expose: true,
    }),
  storageFailed: () =>
    createError(502, 'Image storage returned an error.', { code: 'STORAGE_FAILED', expose: true }),
  preconditionFailed: () =>
    createError(412, 'The If-Match or If-Unmodified-Since condition failed.', {
      code: 'PRECONDITION_FAILED',
      expose: true,
    }),
  // sizeBytes fills `Content-Range: bytes */<size>`, which a 416 should carry (RFC 9110 §15.5.17).
  rangeNotSatisfiable: (sizeBytes?: number) =>
    createError(416, 'The requested range is outside the image.', {
      code: 'RANGE_NOT_SATISFIABLE',
      expose: true,
      ...(sizeBytes === undefined ? {} : { headers: { 'Content-Range': `bytes */${sizeBytes}` } }),
    }),
  /**
   * Not a failure: S3 responded 304 to a conditional read, and the SDK throws for that status.
   * http-errors builds no 3xx errors, so this is a plain Error that `isHttpError` accepts. Should it
   * reach the error handler, Node still sends a 304 without a body.
   */
  notModified: (): HttpError<304> =>
    Object.assign(new Error('Not modified.'), {
      status: 304 as const,
      statusCode: 304 as const,
      expose: true,
      code: 'NOT_MODIFIED',
    }),
  /** The client closed the connection before the response ended. 499 is nginx's code for it. */
  clientClosedRequest: () =>
    createError(499, 'The client closed the request.', {
      code: 'CLIENT_CLOSED_REQUEST',
      expose: false,
    }),
  sessionStoreUnavailable: () =>
    createError(503, 'Sign-in sessions are unavailable. Try again shortly.', {
      code: 'SESSION_STORE_UNAVAILABLE',
      expose: true,
      headers: { 'Retry-After': '5' },
    }),
  databaseUnavailable: () =>
    createError(503, 'The database is unavailable. Try again shortly.', {
      code: 'DATABASE_UNAVAILABLE',
      expose: true,
      headers: { 'Retry-After': '5' },
    }),
} as const;

export { HttpError };

export function isHttpError(error: unknown): error is HttpError {
  return createError.isHttpError(error);
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024)
    return `${(bytes / (1024 * 1024)).toFixed(bytes % (1024 * 1024) ? 1 : 0)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(bytes % 1024 ? 1 : 0)} KiB`;
  return `${bytes} bytes`;
}
