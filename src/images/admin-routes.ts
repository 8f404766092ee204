import type { S3Client } from '@aws-sdk/client-s3';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import express, { type ErrorRequestHandler, type Router } from 'express';
import { requireAdmin } from '../auth/guards';
import { errors, formatBytes, isHttpError, type HttpError } from '../errors';
import { translateS3Error } from '../storage/s3-errors';
import type { Logger } from '../logger';
import { isImageId } from './image-id';
import type { ImageRepository } from './image-repository';
import { describeAcceptedTypes } from './sniff-image';
import { createUploadHandler, type UploadedImages } from './upload-handler';
import { csrfProtection, isValidCsrfToken, issueCsrfToken } from '../web/csrf';

export interface AdminImageRoutesOptions {
  images: ImageRepository;
  client: S3Client;
  bucket: string;
  keyPrefix: string;
  maxBytes: number;
  cacheMaxAgeSeconds: number;
  logger: Logger;
  /** Called with each failed S3 write (upload or delete), such as to count it. */
  onS3Error?: ((failure: HttpError) => void) | undefined;
}

/** Create the admin routes: the upload page, the multipart upload, and image deletion. */
export function createAdminImageRoutes(options: AdminImageRoutesOptions): Router {
  const router = express.Router();
  const { images, logger } = options;
  const pageLocals = {
    title: 'Upload images',
    maxBytes: options.maxBytes,
    maxSize: formatBytes(options.maxBytes),
    acceptedTypes: describeAcceptedTypes(),
  };

  router.get('/admin/upload', requireAdmin, csrfProtection, (_req, res) => {
    res.render('upload', { ...pageLocals, error: undefined, uploaded: [] });
  });

  const upload = createUploadHandler({
    client: options.client,
    bucket: options.bucket,
    keyPrefix: options.keyPrefix,
    maxBytes: options.maxBytes,
    cacheMaxAgeSeconds: options.cacheMaxAgeSeconds,
    verifyCsrfToken: isValidCsrfToken,
    onStored: (image) => images.insert(image),
    onS3Error: options.onS3Error,
    onCleanupError: (error, key) =>
      logger.error({ err: error, key }, 'could not delete object after a failed upload'),
  });

  const respond: express.RequestHandler = (req, res) => {
    const uploaded = res.locals.uploadedImages as UploadedImages;
    for (const image of uploaded) {
      logger.info(
        {
          event: 'image_uploaded',
          imageId: image.id,
          sizeBytes: image.sizeBytes,
          userId: req.user?.id,
        },
        'image uploaded',
      );
    }
    if (req.accepts(['html', 'json']) === 'json') {
      res.status(201).json({ images: uploaded.map((i) => ({ id: i.id, url: `/image/${i.id}` })) });
      return;
    }
    res.redirect(303, `/?uploaded=${uploaded.length}`);
  };

  // Upload errors go back to the upload page (or to the script) with the message and status.
  const uploadErrors: ErrorRequestHandler = (error: unknown, req, res, next) => {
    if (isHttpError(error) && error.code === 'CLIENT_CLOSED_REQUEST') {
      // The client is gone, so no response can reach it. The handler has already deleted what
      // reached S3.
      logger.info(
        { event: 'upload_aborted', userId: req.user?.id },
        'upload aborted by the client',
      );
      return;
    }
    if (!isHttpError(error) || error.status >= 500 || req.accepts(['html', 'json']) === 'json') {
      next(error);
      return;
    }
    logger.warn(
      { event: 'upload_rejected', status: error.status, code: error.code as unknown },
      error.message,
    );
    issueCsrfToken(req, res);
    res
      .status(error.status)
      .render('upload', { ...pageLocals, error: error.message, uploaded: [] });
  };
  router.post('/admin/images', requireAdmin, upload, respond, uploadErrors);

  router.post('/admin/images/:id/delete', requireAdmin, csrfProtection, async (req, res) => {
    const id = req.params.id;
    if (!isImageId(id)) throw errors.imageNotFound();
    const image = await images.findById(id);
    if (!image) throw errors.imageNotFound();

    // Row first: once it is gone no one can be sent to the object, even if the S3 delete fails.
    await images.delete(id);
    try {
      await options.client.send(
        new DeleteObjectCommand({ Bucket: options.bucket, Key: image.key }),
      );
    } catch (error) {
      options.onS3Error?.(translateS3Error(error, 'write'));
      // TODO: queue failed object deletes for retry; today the object stays in the bucket, unreachable.
      logger.error(
        { err: error, imageId: id, key: image.key },
        'image row deleted but the S3 delete failed',
      );
    }
    logger.info({ event: 'image_deleted', imageId: id, userId: req.user?.id }, 'image deleted');
    res.redirect(303, '/');
  });

  return router;
}
