/**
 * s3gate's building blocks, for Express apps that bring their own login and metadata storage.
 * Importing this module starts nothing: no server, no database, no S3 connection.
 *
 * docs/building-blocks.md in the repository shows a complete app that uses them.
 */

// Signed URLs
export {
  createUrlSigner,
  presignedUrlExpiry,
  type ResponseOverrides,
  type SignRequest,
  type UrlSigner,
  type UrlSignerOptions,
} from './storage/url-signer';

// The image route, in redirect and proxy mode
export {
  createImageHandler,
  createImageRouter,
  REDIRECT_CACHE_CONTROL,
  type ImageRouterOptions,
  type ProxyDelivery,
} from './images/image-router';
export {
  createProxyDelivery,
  type ProxyDeliveryOptions,
  type ProxyLogger,
} from './images/proxy-delivery';

// Who is asking, read from express-session's store without express-session's per-request work
export { createSessionReader, type SessionReaderOptions } from './auth/session-reader';

// Uploads
export {
  cleanFileName,
  createUploadHandler,
  type AcceptedImageTypes,
  type UploadedImages,
  type UploadHandlerOptions,
} from './images/upload-handler';
export { DEFAULT_ACCEPTED_TYPES } from './images/sniff-image';

// Errors from the blocks, and a handler that sends them
export {
  createBlockErrorHandler,
  type BlockErrorHandlerOptions,
} from './images/block-error-handler';
export { errors, isHttpError, HttpError } from './errors';

// Image metadata
export type { ImageRecord, NewImage } from './images/image-repository';
export { isImageId, newImageId } from './images/image-id';

// S3 clients, and the embedded S3 server for development and tests
export { createS3Client, type S3ClientOptions } from './storage/s3-client';
export {
  EMBEDDED_S3_CREDENTIALS,
  startEmbeddedS3,
  type EmbeddedS3,
  type EmbeddedS3Options,
} from './storage/embedded-s3';

// Prometheus metrics
export { createMetrics, type Metrics, type MetricsOptions } from './web/metrics';
