import type { Kysely, Selectable } from 'kysely';
import { compileLookup, dataVersionReader } from '../db/compiled-lookup';
import type { Database, ImagesTable } from '../db/schema';
import { ImageRowCache } from './image-row-cache';

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

/**
 * One row cache per SQLite connection, shared by every repository on it, so that a write through
 * one repository empties the cache that the others read. PostgreSQL gets none, because other
 * instances write to it without notifying this process.
 */
const rowCaches = new WeakMap<Kysely<Database>, ImageRowCache>();

function rowCacheFor(db: Kysely<Database>): ImageRowCache | undefined {
  let cache = rowCaches.get(db);
  if (!cache) {
    const readDataVersion = dataVersionReader(db);
    if (!readDataVersion) return undefined;
    cache = new ImageRowCache(readDataVersion);
    rowCaches.set(db, cache);
  }
  return cache;
}

/**
 * Stores and reads image metadata. It has no dependency on S3 or sessions. On SQLite, `findById`
 * serves rows from an `ImageRowCache`, so one record object may go to many requests: callers
 * must not change it.
 */
export class ImageRepository {
  /**
   * `options.rowCache`: serve `findById` from the connection's row cache on SQLite. Default true.
   * With false, every lookup reads the database; writes still empty the shared cache.
   */
  constructor(
    private readonly db: Kysely<Database>,
    options: { rowCache?: boolean } = {},
  ) {
    this.selectById = compileLookup(db, (d, id) =>
      d.selectFrom('images').selectAll().where('id', '=', id),
    );
    this.cache = rowCacheFor(db);
    this.readsCache = this.cache !== undefined && options.rowCache !== false;
  }

  private readonly selectById;
  private readonly cache: ImageRowCache | undefined;
  private readonly readsCache: boolean;

  async findById(id: string): Promise<ImageRecord | undefined> {
    if (!this.cache || !this.readsCache) {
      const row = await this.selectById(id);
      return row && toRecord(row);
    }

    // The cache check and the SQLite read run in the same tick, with nothing in between.
    const cached = this.cache.get(id);
    if ('record' in cached) return cached.record;
    const row = await this.selectById(id);
    if (!row) return undefined;
    const record = toRecord(row);
    this.cache.store(cached.token, record);
    return record;
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
    await this.write(() =>
      this.db
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
        .execute(),
    );
    return { ...image, createdAt };
  }

  /** Returns true when a row was deleted. */
  async delete(id: string): Promise<boolean> {
    const result = await this.write(() =>
      this.db.deleteFrom('images').where('id', '=', id).executeTakeFirst(),
    );
    return result.numDeletedRows > 0n;
  }

  private write<T>(run: () => Promise<T>): Promise<T> {
    return this.cache ? this.cache.write(run) : run();
  }
}
