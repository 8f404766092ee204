import type { Kysely, Selectable } from 'kysely';
import { compileLookup } from '../db/compiled-lookup';
import type { Database, ImagesTable } from '../db/schema';

/** Metadata of one stored image, as the routes use it. */
export interface ImageRecord {
  /** Id in `/image/:id`; the upload handler makes 22-character base64url ids. */
  id: string;
  /** S3 key of the object. It never comes from the client. */
  key: string;
  /** Media type of the object, such as `image/png`. */
  contentType: string;
  /** Size of the object in bytes; proxy mode serves ranges from it. */
  sizeBytes: number;
  /** S3 ETag of the object, quoted or bare; null when unknown. */
  etag: string | null;
  /** Cleaned file name from the upload, used in Content-Disposition. */
  originalName: string;
  /** Pixel width, or null when unknown. */
  width: number | null;
  /** Pixel height, or null when unknown. */
  height: number | null;
  /** Id of the uploading user, or null. */
  uploadedBy: string | null;
  /** Upload time; proxy mode sends it as Last-Modified. */
  createdAt: Date;
  /** False for objects stored without Cache-Control and Expires; signed URLs then add overrides. */
  hasCacheMetadata: boolean;
}

/** An image to record; `createdAt` defaults to the time of the insert. */
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

/** Stores and reads image metadata. It has no dependency on S3 or sessions. */
export class ImageRepository {
  constructor(private readonly db: Kysely<Database>) {
    this.selectById = compileLookup(db, (d, id) =>
      d.selectFrom('images').selectAll().where('id', '=', id),
    );
  }

  private readonly selectById;

  async findById(id: string): Promise<ImageRecord | undefined> {
    const row = await this.selectById(id);
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
