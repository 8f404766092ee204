import { PassThrough, type Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import Busboy from 'busboy';
import { create as createContentDisposition } from 'content-disposition';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { errors, isHttpError, type HttpError } from '../errors';
import { checkFunction, checkInteger, checkNonEmptyString, checkS3Client } from '../option-checks';
import { translateS3Error } from '../storage/s3-errors';
import { putObjectStream, deleteObjectQuietly } from '../storage/object-upload';
import { newImageId } from './image-id';
import { ImageStructureError, createImageEndCheck, hasKnownStructure } from './image-structure';
import type { ImageRecord, NewImage } from './image-repository';
import {
  DEFAULT_ACCEPTED_TYPES,
  MAX_SNIFF_BYTES,
  describeAcceptedTypes,
  sniffImage,
  type SniffedImage,
} from './sniff-image';

/** Accepted image types, keyed by the type name that image-size reports (jpg, png, gif, webp, avif, ...). */
export type AcceptedImageTypes = Readonly<
  Record<string, { contentType: string; extension: string }>
>;

/**
 * Options of `createUploadHandler`.
 *
 * Every stored object gets this metadata: the sniffed `Content-Type`, `Cache-Control: private,
 * max-age=<cacheMaxAgeSeconds>, immutable`, an `Expires` that many seconds after the upload, and
 * `Content-Disposition: inline` with the cleaned file name.
 */
export interface UploadHandlerOptions {
  /** Client for PutObject and multipart uploads; it needs s3:PutObject, s3:AbortMultipartUpload and s3:DeleteObject. */
  client: S3Client;
  /** Bucket for new objects. */
  bucket: string;
  /**
   * Prefix for new keys, such as "images/"; may be empty. Each key is the prefix, a new random id
   * and the extension of the sniffed type, so no part of a key comes from the client.
   */
  keyPrefix: string;
  /** Maximum size of one file in bytes; a larger file gets 413 and is not stored. */
  maxBytes: number;
  /** `max-age` in seconds of the Cache-Control and the distance of the Expires stored on each object. */
  cacheMaxAgeSeconds: number;
  /** Maximum number of files in one request; more gets 400. Default 20. */
  maxFiles?: number;
  /**
   * Accepted types; a file of another type gets 415. Default `DEFAULT_ACCEPTED_TYPES`: JPEG, PNG,
   * GIF, WebP and AVIF. SVG is rejected here because it can carry scripts.
   */
  acceptedTypes?: AcceptedImageTypes;
  /**
   * Check the CSRF token. It is called with the `x-csrf-token` header, or else with the `_csrf` form
   * field, which must come before the first file so that nothing is stored for a forged request.
   * Default: no check, for apps that protect the route by other means.
   */
  verifyCsrfToken?: (req: Request, token: string | undefined) => boolean;
  /**
   * Id of the uploading user, stored as `uploadedBy` on the new image. Default: passport's
   * `req.user?.id`, or null without a user.
   */
  uploaderId?: (req: Request) => string | null;
  /**
   * Record the stored object, typically as a metadata row, and resolve it (or your own record). It
   * runs after S3 has confirmed the object. When it rejects, the object is deleted again and the
   * upload fails with that error, so an object never exists without its row.
   */
  onStored: (image: NewImage, req: Request) => Promise<ImageRecord | NewImage>;
  /** Log a clean-up that failed after another error; the upload error itself goes to `next`. */
  onCleanupError?: (error: unknown, key: string) => void;
  /**
   * Called with each failed S3 write, translated by `translateS3Error`, such as to count it.
   * Failures of the upload itself (size limit, client gone) are not S3 failures. Default: ignore.
   */
  onS3Error?: (failure: HttpError) => void;
}

/** Set on `res.locals.uploadedImages` for the route that sends the response. */
export type UploadedImages = (ImageRecord | NewImage)[];

const MAX_NAME_LENGTH = 255;

/** Reduce a client-supplied file name to a safe display name: no path, no control characters. */
export function cleanFileName(name: string | undefined): string {
  const base = (name ?? '').split(/[\\/]/).pop() ?? '';
  const cleaned = base
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u001f\u007f]/g, '')
    .trim();
  // Cut by code points: a cut inside a surrogate pair would leave a lone surrogate, which
  // encodeURIComponent (and so the Content-Disposition header) rejects.
  const shortened = Array.from(cleaned).slice(0, MAX_NAME_LENGTH).join('');
  return shortened === '' ? 'image' : shortened;
}

/** Other extensions that name the same type, keyed by the extension that keys are stored with. */
const EXTENSION_ALIASES: Readonly<Record<string, readonly string[]>> = {
  jpg: ['jpg', 'jpeg', 'jpe', 'jfif'],
};

/**
 * Give a display name the extension of the image's real type, so that a downloaded copy opens
 * as an image: a PNG named "page.html" becomes "page.png", and "photo" becomes "photo.png".
 */
export function withImageExtension(name: string, extension: string): string {
  const dot = name.lastIndexOf('.');
  const current = dot > 0 ? name.slice(dot + 1).toLowerCase() : '';
  if ((EXTENSION_ALIASES[extension] ?? [extension]).includes(current)) return name;
  const base = Array.from(dot > 0 ? name.slice(0, dot) : name)
    .slice(0, MAX_NAME_LENGTH - extension.length - 1)
    .join('');
  return `${base}.${extension}`;
}

/**
 * Read bytes from the file stream until they identify an accepted image, the sniff limit is
 * reached, or the file ends. Returns the bytes read so far, to be sent on ahead of the rest.
 */
async function readHead(
  file: Readable,
  accepted: AcceptedImageTypes,
): Promise<{ head: Buffer; image: SniffedImage | undefined; ended: boolean }> {
  const chunks: Buffer[] = [];
  let length = 0;
  for (;;) {
    const chunk = await nextChunk(file);
    if (chunk === null) {
      const head = Buffer.concat(chunks, length);
      return { head, image: sniffImage(head, accepted), ended: true };
    }
    chunks.push(chunk);
    length += chunk.length;
    const head = Buffer.concat(chunks, length);
    const image = sniffImage(head, accepted);
    if (image || length >= MAX_SNIFF_BYTES) return { head, image, ended: false };
  }
}

/** busboy marks a file stream as truncated once it has hit the size limit. */
function isTruncated(file: Readable): boolean {
  return (file as Readable & { truncated?: boolean }).truncated === true;
}

function nextChunk(stream: Readable): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunk = stream.read() as Buffer | null;
    if (chunk !== null) return resolve(chunk);
    if (stream.readableEnded) return resolve(null);

    const cleanup = () => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    const onReadable = () => {
      const next = stream.read() as Buffer | null;
      if (next === null) return;
      cleanup();
      resolve(next);
    };
    const onEnd = () => {
      cleanup();
      resolve(null);
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('error', onError);
  });
}

const FACTORY = 'createUploadHandler';

/** Check the options once, at construction. */
function checkUploadOptions(options: UploadHandlerOptions): void {
  checkS3Client(FACTORY, 'client', options.client);
  checkNonEmptyString(FACTORY, 'bucket', options.bucket, 'Pass the name of the image bucket.');
  if (typeof options.keyPrefix !== 'string') {
    throw new TypeError(
      `${FACTORY}: \`keyPrefix\` must be a string such as "images/" (or "" for none).`,
    );
  }
  checkInteger(FACTORY, 'maxBytes', options.maxBytes, {
    hint: 'Use the largest file size in bytes, such as 10485760 for 10 MiB.',
  });
  checkInteger(FACTORY, 'cacheMaxAgeSeconds', options.cacheMaxAgeSeconds, {
    hint: 'Use the max-age of the objects in seconds, such as 31536000.',
  });
  if (options.maxFiles !== undefined) checkInteger(FACTORY, 'maxFiles', options.maxFiles);
  checkFunction(FACTORY, 'onStored', options.onStored, {
    hint: 'Pass a function that records the stored image, such as a metadata insert.',
  });
  checkFunction(FACTORY, 'verifyCsrfToken', options.verifyCsrfToken, { optional: true });
  checkFunction(FACTORY, 'uploaderId', options.uploaderId, { optional: true });
  checkFunction(FACTORY, 'onCleanupError', options.onCleanupError, { optional: true });
  checkFunction(FACTORY, 'onS3Error', options.onS3Error, { optional: true });
  if (options.acceptedTypes !== undefined) checkAcceptedTypes(options.acceptedTypes);
}

function checkAcceptedTypes(accepted: AcceptedImageTypes): void {
  const entries = Object.entries(accepted);
  if (entries.length === 0) {
    throw new TypeError(
      `${FACTORY}: \`acceptedTypes\` is empty, so every upload would fail. Leave it out for the defaults.`,
    );
  }
  for (const [name, type] of entries) {
    // An SVG is a document that can run scripts when opened from the bucket's origin.
    if (name === 'svg' || type.contentType === 'image/svg+xml') {
      throw new TypeError(
        `${FACTORY}: \`acceptedTypes\` must not contain SVG, because it can carry scripts. Convert SVGs to a raster type.`,
      );
    }
    if (
      !/^image\/[a-z0-9.+-]+$/.test(type.contentType) ||
      !/^[a-z0-9]{1,10}$/.test(type.extension)
    ) {
      throw new TypeError(
        `${FACTORY}: \`acceptedTypes.${name}\` needs an image/* contentType and a lowercase extension ` +
          `without a dot, got ${JSON.stringify(type)}.`,
      );
    }
  }
}

/**
 * Create the multipart upload handler: it streams each file to S3 under a new id, after checking
 * its real type from the magic bytes, and records it through `onStored`. Nothing is kept in memory
 * beyond the sniffed head and the parts in flight.
 *
 * It reads a `multipart/form-data` body and stores every file part, whatever its field name. On
 * success it sets `res.locals.uploadedImages` (the records that `onStored` resolved, in upload
 * order) and calls `next()`, so the next handler sends the response. On failure it calls
 * `next(error)` with an error from `errors`: 400 for a malformed body, too many files or no file,
 * 403 for a failed CSRF check, 413 over `maxBytes`, 415 for a type not accepted, 422 for a
 * damaged image or one followed by other data, and 502, 503 or 504 when S3 fails. A client that
 * leaves mid-body gets 499.
 *
 * A failed request stores none of its files: `onStored` runs only once every file is in S3, and objects already
 * stored are deleted again.
 *
 * The handler does not check who is signed in: put your own guard in front of it.
 *
 * @throws TypeError at construction for a missing or invalid option.
 */
export function createUploadHandler(options: UploadHandlerOptions): RequestHandler {
  checkUploadOptions(options);
  const accepted = options.acceptedTypes ?? DEFAULT_ACCEPTED_TYPES;
  const acceptedNames = describeAcceptedTypes(accepted);
  const maxFiles = options.maxFiles ?? 20;
  const uploaderId = options.uploaderId ?? ((req: Request) => req.user?.id ?? null);

  /** Stream one file to S3. Its record is written later, once the whole request has succeeded. */
  async function storeFile(req: Request, file: Readable, filename: string): Promise<NewImage> {
    const { head, image, ended } = await readHead(file, accepted);
    if (isTruncated(file)) throw errors.uploadTooLarge(options.maxBytes);
    if (!image) {
      if (head.length === 0) throw errors.badUpload('the file is empty.');
      throw errors.unsupportedImageType(acceptedNames);
    }

    const id = newImageId();
    const key = `${options.keyPrefix}${id}.${image.extension}`;
    const name = withImageExtension(filename, image.extension);
    // The structure check fails the body when the image is cut short or followed by more data.
    const body = hasKnownStructure(image.type)
      ? createImageEndCheck(image.type)
      : new PassThrough();
    body.write(head);
    if (ended) body.end();
    else file.pipe(body);
    // busboy ends a file stream at the size limit as if the file were complete. Turning that into
    // an error before the end reaches S3 means a truncated file is never stored.
    file.once('limit', () => body.destroy(errors.uploadTooLarge(options.maxBytes)));
    file.once('error', (error: Error) => body.destroy(error));

    const maxAge = options.cacheMaxAgeSeconds;
    let stored;
    try {
      stored = await putObjectStream(options.client, {
        bucket: options.bucket,
        key,
        body,
        contentType: image.contentType,
        cacheControl: `private, max-age=${maxAge}, immutable`,
        expires: new Date(Date.now() + maxAge * 1000),
        contentDisposition: createContentDisposition(name, { type: 'inline' }),
      });
    } catch (error) {
      // Body errors (size limit, client gone, damaged image) are ours; the rest come from S3.
      if (isHttpError(error)) throw error;
      if (error instanceof ImageStructureError) throw errors.invalidImage(error.message);
      const failure = translateS3Error(error, 'write');
      options.onS3Error?.(failure);
      throw failure;
    }

    return {
      id,
      key,
      contentType: image.contentType,
      sizeBytes: stored.sizeBytes,
      etag: stored.etag,
      originalName: name,
      width: image.width,
      height: image.height,
      uploadedBy: uploaderId(req),
      hasCacheMetadata: true,
    };
  }

  /** Delete objects that will get no record, logging the deletes that fail. */
  async function discardObjects(images: NewImage[]): Promise<void> {
    for (const image of images) {
      const cleanupError = await deleteObjectQuietly(options.client, options.bucket, image.key);
      if (cleanupError) options.onCleanupError?.(cleanupError, image.key);
    }
  }

  /**
   * Record every stored object through `onStored`, in upload order. When one record fails, the
   * objects still without a record are deleted.
   */
  async function recordAll(req: Request, stored: NewImage[]): Promise<(ImageRecord | NewImage)[]> {
    const records: (ImageRecord | NewImage)[] = [];
    for (const [index, image] of stored.entries()) {
      try {
        records.push(await options.onStored(image, req));
      } catch (error) {
        // NOTE: the records already written stay, each with its object, so nothing is orphaned.
        // Only this failing file and the ones after it are lost.
        await discardObjects(stored.slice(index));
        throw error;
      }
    }
    return records;
  }

  return (req: Request, res: Response, next: NextFunction) => {
    if (!req.is('multipart/form-data')) {
      next(errors.badUpload('expected a multipart/form-data body.'));
      return;
    }
    let busboy: Busboy.Busboy;
    try {
      busboy = Busboy({
        headers: req.headers,
        // Browsers send file names as raw UTF-8 in the part header; busboy's default is latin1.
        defParamCharset: 'utf8',
        limits: {
          fileSize: options.maxBytes,
          files: maxFiles,
          fields: 20,
          fieldSize: 4096,
          parts: maxFiles + 20,
        },
      });
    } catch {
      next(errors.badUpload('expected a multipart/form-data body.'));
      return;
    }

    const headerToken = req.get('x-csrf-token');
    let csrfOk = options.verifyCsrfToken ? options.verifyCsrfToken(req, headerToken) : true;
    let failure: unknown;
    let fileCount = 0;
    const stored: NewImage[] = [];
    let chain: Promise<void> = Promise.resolve();

    const fail = (error: unknown) => {
      failure ??= error;
    };

    busboy.on('field', (name, value) => {
      if (name === '_csrf' && !csrfOk && options.verifyCsrfToken) {
        csrfOk = options.verifyCsrfToken(req, value);
      }
    });

    busboy.on('file', (_field, file, info) => {
      fileCount += 1;
      if (failure !== undefined || !csrfOk) {
        if (!csrfOk) fail(errors.csrfInvalid());
        file.resume();
        return;
      }
      const filename = cleanFileName(info.filename);
      chain = chain.then(async () => {
        if (failure !== undefined) {
          file.resume();
          return;
        }
        try {
          stored.push(await storeFile(req, file, filename));
        } catch (error) {
          fail(error);
          // Keep reading so the client can finish sending and read the response on this connection.
          file.resume();
        }
      });
    });

    busboy.on('filesLimit', () => fail(errors.badUpload(`at most ${maxFiles} files per upload.`)));
    busboy.on('partsLimit', () => fail(errors.badUpload('too many form fields.')));
    busboy.on('fieldsLimit', () => fail(errors.badUpload('too many form fields.')));

    busboy.on('error', (error: Error) => {
      fail(errors.badUpload(error.message.endsWith('.') ? error.message : `${error.message}.`));
      req.unpipe(busboy);
      req.resume();
      void chain.then(() => finish());
    });

    busboy.on('close', () => {
      void chain.then(() => finish());
    });

    // The client went away before the end of the body. busboy would wait for the rest forever,
    // and so would the S3 upload of the current file. Failing both aborts that upload.
    req.once('close', () => {
      if (req.complete) return;
      fail(errors.clientClosedRequest());
      busboy.destroy(errors.clientClosedRequest());
    });

    let finished = false;
    const finish = async () => {
      if (finished) return;
      finished = true;

      // A failed request stores none of its files, including those that reached S3 before it failed.
      const rejection =
        failure ??
        (!csrfOk ? errors.csrfInvalid() : undefined) ??
        (fileCount === 0 ? errors.badUpload('no file was sent.') : undefined);
      if (rejection !== undefined) {
        await discardObjects(stored);
        next(rejection);
        return;
      }

      try {
        res.locals.uploadedImages = (await recordAll(req, stored)) satisfies UploadedImages;
      } catch (error) {
        next(error);
        return;
      }
      next();
    };

    req.pipe(busboy);
  };
}
