import { DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Readable } from 'node:stream';

export interface PutObjectStreamInput {
  bucket: string;
  key: string;
  body: Readable;
  contentType: string;
  cacheControl: string;
  expires: Date;
  contentDisposition: string;
}

export interface StoredObject {
  etag: string | null;
  sizeBytes: number;
}

/**
 * Stream a body to S3 without holding it in memory: one PutObject for small bodies, a multipart
 * upload in 5 MiB parts for larger ones. On any failure the multipart upload is aborted and the
 * key deleted, so a failed upload leaves no object behind.
 */
export async function putObjectStream(
  client: S3Client,
  input: PutObjectStreamInput,
): Promise<StoredObject> {
  let sizeBytes = 0;
  let bodyError: unknown;
  input.body.on('data', (chunk: Buffer) => {
    sizeBytes += chunk.length;
  });
  input.body.on('error', (error) => {
    bodyError ??= error;
  });

  const upload = new Upload({
    client,
    // Two parts in flight bound memory at about 10 MiB per upload.
    queueSize: 2,
    leavePartsOnError: false,
    params: {
      Bucket: input.bucket,
      Key: input.key,
      Body: input.body,
      ContentType: input.contentType,
      CacheControl: input.cacheControl,
      Expires: input.expires,
      ContentDisposition: input.contentDisposition,
    },
  });

  try {
    const result = await upload.done();
    return { etag: result.ETag ?? null, sizeBytes };
  } catch (error) {
    await deleteObjectQuietly(client, input.bucket, input.key);
    // When the body failed (size limit, client gone), lib-storage may report the follow-up
    // AbortMultipartUpload failure instead. The body's error is the one that explains the upload.
    throw bodyError ?? error;
  }
}

/**
 * Delete an object, ignoring failures: used for clean-up after an error that is already being reported.
 * Returns the error it swallowed, so the caller can log it.
 */
export async function deleteObjectQuietly(
  client: S3Client,
  bucket: string,
  key: string,
): Promise<unknown> {
  try {
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    return undefined;
  } catch (error) {
    return error;
  }
}
