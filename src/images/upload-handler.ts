import { PassThrough, type Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import Busboy from 'busboy';
import { create as createContentDisposition } from 'content-disposition';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { errors, isHttpError } from '../errors';
import { translateS3Error } from '../storage/s3-errors';
import { putObjectStream, deleteObjectQuietly } from '../storage/object-upload';
import { newImageId } from './image-id';
import type { ImageRecord, NewImage } from './image-repository';
import {
  DEFAULT_ACCEPTED_TYPES,
  MAX_SNIFF_BYTES,
  describeAcceptedTypes,
  sniffImage,
  type SniffedImage,
} from './sniff-image';

export interface UploadHandlerOptions {
  client: S3Client;
  bucket: string;
  /** Prefix for new keys, such as "images/". Keys are the prefix, a new id and an extension. */
  keyPrefix: string;
  /** Maximum size of one file in bytes; larger files get 413. */
  maxBytes: number;
  /** max-age for the Cache-Control and Expires stored on each object. */
  cacheMaxAgeSeconds: number;
  /** Maximum number of files in one request. Default 20. */
  maxFiles?: number;
  /** Accepted types keyed by image-size's type name. Default: JPEG, PNG, GIF, WebP, AVIF. */
  acceptedTypes?: Readonly<Record<string, { contentType: string; extension: string }>>;
  /**
   * Check the CSRF token. It is called with the `x-csrf-token` header, or else with the `_csrf` form
   * field, which must come before the first file so that nothing is stored for a forged request.
   */
  verifyCsrfToken?: (req: Request, token: string | undefined) => boolean;
  /**
   * Record the stored object, typically as a metadata row. When it rejects, the object is deleted
   * again and the upload fails, so an object never exists without its row.
   */
  onStored: (image: NewImage, req: Request) => Promise<ImageRecord | NewImage>;
  /** Log a clean-up that failed after another error; the upload error itself goes to `next`. */
  onCleanupError?: (error: unknown, key: string) => void;
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
    .trim()
    .slice(0, MAX_NAME_LENGTH);
  return cleaned === '' ? 'image' : cleaned;
}

/**
 * Read bytes from the file stream until they identify an accepted image, the sniff limit is
 * reached, or the file ends. Returns the bytes read so far, to be sent on ahead of the rest.
 */
async function readHead(
  file: Readable,
  accepted: NonNullable<UploadHandlerOptions['acceptedTypes']>,
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

/**
 * Create the multipart upload handler: it streams each file to S3 under a new id, after checking
 * its real type from the magic bytes, and records it through `onStored`. Nothing is kept in memory
 * beyond the sniffed head and the parts in flight.
 *
 * On success it sets `res.locals.uploadedImages` and calls `next()`; on failure it calls
 * `next(error)` with a 4xx or 5xx from the error catalogue.
 */
export function createUploadHandler(options: UploadHandlerOptions): RequestHandler {
  const accepted = options.acceptedTypes ?? DEFAULT_ACCEPTED_TYPES;
  const acceptedNames = describeAcceptedTypes(accepted);
  const maxFiles = options.maxFiles ?? 20;

  async function storeFile(
    req: Request,
    file: Readable,
    filename: string,
  ): Promise<ImageRecord | NewImage> {
    const { head, image, ended } = await readHead(file, accepted);
    if (isTruncated(file)) throw errors.uploadTooLarge(options.maxBytes);
    if (!image) {
      if (head.length === 0) throw errors.badUpload('the file is empty.');
      throw errors.unsupportedImageType(acceptedNames);
    }

    const id = newImageId();
    const key = `${options.keyPrefix}${id}.${image.extension}`;
    const body = new PassThrough();
    body.write(head);
    if (ended) body.end();
    else file.pipe(body);
    // busboy ends a file stream at the size limit as if the file were complete; turn that into
    // an error before the end reaches S3, so a truncated file is never stored.
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
        contentDisposition: createContentDisposition(filename, { type: 'inline' }),
      });
    } catch (error) {
      // Body errors (size limit, client gone) are ours already; the rest come from S3.
      throw isHttpError(error) ? error : translateS3Error(error, 'write');
    }

    const record: NewImage = {
      id,
      key,
      contentType: image.contentType,
      sizeBytes: stored.sizeBytes,
      etag: stored.etag,
      originalName: filename,
      width: image.width,
      height: image.height,
      uploadedBy: req.user?.id ?? null,
      hasCacheMetadata: true,
    };
    try {
      return await options.onStored(record, req);
    } catch (error) {
      const cleanupError = await deleteObjectQuietly(options.client, options.bucket, key);
      if (cleanupError) options.onCleanupError?.(cleanupError, key);
      throw error;
    }
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
    const results: (ImageRecord | NewImage)[] = [];
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
          results.push(await storeFile(req, file, filename));
        } catch (error) {
          fail(error);
          // Keep reading so the client can finish sending and read the answer on this connection.
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

    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      if (failure !== undefined) {
        next(failure);
        return;
      }
      if (!csrfOk) {
        next(errors.csrfInvalid());
        return;
      }
      if (fileCount === 0) {
        next(errors.badUpload('no file was sent.'));
        return;
      }
      res.locals.uploadedImages = results satisfies UploadedImages;
      next();
    };

    req.pipe(busboy);
  };
}
