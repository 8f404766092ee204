import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';

/** Error names that prove S3 responded and accepted the credentials: the probe key just is not there. */
const ANSWERED = new Set(['NoSuchKey', 'NotFound', 'AccessDenied']);

/**
 * Check that S3 is reachable and accepts our credentials, without needing bucket-level rights.
 * It reads a key that does not exist: S3 returns NoSuchKey when the identity may list the bucket
 * and AccessDenied when it may not, and both prove the round trip. HeadBucket would need
 * s3:ListBucket, which a least-privilege policy on the image prefix does not grant.
 */
export async function checkStorage(
  client: S3Client,
  bucket: string,
  probeKey: string,
): Promise<void> {
  try {
    const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: probeKey }));
    (response.Body as Readable | undefined)?.destroy();
  } catch (error) {
    if (error instanceof Error && ANSWERED.has(error.name)) return;
    throw error;
  }
}
