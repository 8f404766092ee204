import type { Kysely, Selectable } from 'kysely';
import type { Database, ImagesTable } from '../db/schema';

/** Metadata of one stored image, as the routes use it. */
export interface ImageRecord {
  id: string;
  key: string;
  contentType: string;
  sizeBytes: number;
  etag: string | null;
  originalName: string;
  width: number | null;
  height: number | null;
  uploadedBy: string | null;
  createdAt: Date;
  /** False for objects stored without Cache-Control and Expires; signed URLs then add overrides. */
  hasCacheMetadata: boolean;
}

export type NewImage = Omit<ImageRecord, 'createdAt'> & { createdAt?: Date };

function toRecord(row: Selectable<ImagesTable>): ImageRecord {
  return {
    id: row.id,
    key: row.s3_key,
    contentType: row.content_type,
    sizeBytes: row.size_bytes,
    etag: row.etag,
    originalName: row.original_name,
    width: row.width,
    height: row.height,
    uploadedBy: row.uploaded_by,
    createdAt: new Date(row.created_at),
    hasCacheMetadata: row.cache_metadata === 1,
  };
}

/** Stores and reads image metadata; knows nothing about S3 or sessions. */
export class ImageRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async findById(id: string): Promise<ImageRecord | undefined> {
    const row = await this.db
      .selectFrom('images')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toRecord(row);
  }

  /** Newest first. */
  async list(limit = 500): Promise<ImageRecord[]> {
    const rows = await this.db
      .selectFrom('images')
      .selectAll()
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .limit(limit)
      .execute();
    return rows.map(toRecord);
  }

  async insert(image: NewImage): Promise<ImageRecord> {
    const createdAt = image.createdAt ?? new Date();
    await this.db
      .insertInto('images')
      .values({
        id: image.id,
        s3_key: image.key,
        content_type: image.contentType,
        size_bytes: image.sizeBytes,
        etag: image.etag,
        original_name: image.originalName,
        width: image.width,
        height: image.height,
        uploaded_by: image.uploadedBy,
        created_at: createdAt.toISOString(),
        cache_metadata: image.hasCacheMetadata ? 1 : 0,
      })
      .execute();
    return { ...image, createdAt };
  }

  /** Returns true when a row was deleted. */
  async delete(id: string): Promise<boolean> {
    const result = await this.db.deleteFrom('images').where('id', '=', id).executeTakeFirst();
    return result.numDeletedRows > 0n;
  }
}
