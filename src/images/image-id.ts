import { randomBytes } from 'node:crypto';

/** 16 random bytes in base64url: 22 characters from [A-Za-z0-9_-], 128 bits of entropy. */
const IMAGE_ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;

/** Create a new image id. Ids are server-made, so no part of an S3 key comes from a client. */
export function newImageId(): string {
  return randomBytes(16).toString('base64url');
}

/** Check the id format before anything else touches the id; a mismatch is a plain 404. */
export function isImageId(value: unknown): value is string {
  return typeof value === 'string' && IMAGE_ID_PATTERN.test(value);
}
