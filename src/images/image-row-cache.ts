import { LRUCache } from 'lru-cache';
import type { ImageRecord } from './image-repository';

/** Maximum number of image rows the cache keeps per SQLite connection (an estimated 1 KB each). */
export const IMAGE_ROW_CACHE_MAX_ENTRIES = 10_000;

/**
 * Image rows remembered between requests on one SQLite connection. Image rows are only ever
 * inserted and deleted, never updated, so a remembered row stays valid until a write removes it.
 *
 * Two kinds of write empty the whole cache:
 * - writes on this connection, which the repository wraps in `write`;
 * - commits by any other connection to the same file, such as another worker started by
 *   `WEB_CONCURRENCY`. SQLite's `PRAGMA data_version` changes after such a commit, and every
 *   `get` reads it first, so a delete in one process gives 404 in every other process at once.
 *   The pragma does not change for the connection's own commits, which is why those go through
 *   `write`. It changes for commits to any table, sessions included, so several workers on one
 *   file empty each other's caches often.
 *
 * Reading the pragma is cheaper than the row read it saves: 1.8 µs against 6.4 µs per lookup in
 * a loop over 200 rows (better-sqlite3 12, Node 20, 2 cores). Nearly all of the 1.8 µs is the
 * read transaction that the pragma opens (a `SELECT 1`, which opens none, took 0.08 µs). In WAL
 * mode it takes and releases a lock on the -shm file, two fcntl calls, so any per-request check
 * through SQLite costs at least that.
 */
export class ImageRowCache {
  private readonly rows = new LRUCache<string, ImageRecord>({ max: IMAGE_ROW_CACHE_MAX_ENTRIES });

  /** Changes whenever the cache is emptied, so a read that started before cannot store its row. */
  private generation = 0;

  private seenDataVersion: number;

  /** `readDataVersion` returns the connection's `PRAGMA data_version`. */
  constructor(private readonly readDataVersion: () => number) {
    this.seenDataVersion = readDataVersion();
  }

  /**
   * Return the remembered row for `id` as `{ record }`. On a miss, return `{ token }` instead:
   * pass the token to `store` with the row read after this call.
   */
  get(id: string): { record: ImageRecord } | { token: number } {
    const dataVersion = this.readDataVersion();
    if (dataVersion !== this.seenDataVersion) {
      this.seenDataVersion = dataVersion;
      this.clear();
    }

    const record = this.rows.get(id);
    return record ? { record } : { token: this.generation };
  }

  /**
   * Remember a row read after `get` returned `token`. The row is dropped when the cache was
   * emptied in between, because it may have been read before that write committed.
   */
  store(token: number, record: ImageRecord): void {
    if (token !== this.generation) return;
    this.rows.set(record.id, record);
  }

  /**
   * Run a write to the images table on this connection, then empty the cache, whether the write
   * failed or not. Until the write returns, lookups may still see the row as it was before, as
   * they would had they run a moment earlier. Rows read while it runs are stored only until it
   * returns, and rows that reach `store` after that are dropped.
   */
  async write<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } finally {
      this.clear();
    }
  }

  private clear(): void {
    this.generation += 1;
    this.rows.clear();
  }
}
