import type { Generated } from 'kysely';

/** Row shapes of the tables, shared by SQLite and PostgreSQL. Times are ISO 8601 text in UTC. */
export interface UsersTable {
  id: string;
  username: string;
  password_hash: string;
  role: 'admin' | 'member';
  created_at: string;
  /** Set when the password changes; sessions signed in before it end. */
  password_changed_at: string | null;
}

/**
 * Rows are inserted and deleted, never updated. On SQLite, write them only through
 * ImageRepository: image lookups are cached per connection, and only its writes empty the cache.
 */
export interface ImagesTable {
  id: string;
  s3_key: string;
  content_type: string;
  size_bytes: number;
  etag: string | null;
  original_name: string;
  width: number | null;
  height: number | null;
  uploaded_by: string | null;
  created_at: string;
  /** 1 when the object was stored with Cache-Control and Expires metadata, 0 when it was not. */
  cache_metadata: Generated<number>;
}

export interface SessionsTable {
  sid: string;
  /** The express-session data as JSON. */
  sess: string;
  /** Expiry in milliseconds since the epoch. */
  expires_at: number;
}

export interface Database {
  users: UsersTable;
  images: ImagesTable;
  sessions: SessionsTable;
}
