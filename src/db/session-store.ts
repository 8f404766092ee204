import session from 'express-session';
import type { Kysely } from 'kysely';
import { LRUCache } from 'lru-cache';
import { compileLookup } from './compiled-lookup';
import type { Database } from './schema';

type Callback = (error?: unknown) => void;

/** A touch that moves the expiry by less than this writes nothing. */
const TOUCH_SLACK_MS = 60_000;

export interface DatabaseSessionStoreOptions {
  /** Lifetime of a session without a cookie maxAge, in milliseconds. Default one day. */
  defaultTtlMs?: number;
  /** How often expired rows are deleted, in milliseconds; 0 turns pruning off. Default 15 minutes. */
  pruneIntervalMs?: number;
  onPruneError?: (error: unknown) => void;
}

/**
 * express-session store on the app's own database (SQLite or PostgreSQL through Kysely), so
 * sessions survive a restart without an extra service. Redis is used instead when configured.
 */
export class DatabaseSessionStore extends session.Store {
  private readonly defaultTtlMs: number;
  private readonly pruneTimer: NodeJS.Timeout | undefined;
  private readonly selectBySid;
  /** Expiry last written per session id by this process, to skip touches that change nothing. */
  private readonly writtenExpiry = new LRUCache<string, number>({ max: 100_000 });

  constructor(
    private readonly db: Kysely<Database>,
    options: DatabaseSessionStoreOptions = {},
  ) {
    super();
    this.selectBySid = compileLookup(db, (d, sid) =>
      d.selectFrom('sessions').select(['sess', 'expires_at']).where('sid', '=', sid),
    );
    this.defaultTtlMs = options.defaultTtlMs ?? 24 * 60 * 60 * 1000;
    const interval = options.pruneIntervalMs ?? 15 * 60 * 1000;
    if (interval > 0) {
      this.pruneTimer = setInterval(() => {
        this.prune().catch((error: unknown) => options.onPruneError?.(error));
      }, interval);
      this.pruneTimer.unref();
    }
  }

  private expiry(sess: session.SessionData): number {
    // The cookie's maxAge getter returns the milliseconds left until the cookie expires.
    const remaining = sess.cookie.maxAge;
    return Date.now() + (typeof remaining === 'number' ? remaining : this.defaultTtlMs);
  }

  override get(
    sid: string,
    callback: (error: unknown, session?: session.SessionData | null) => void,
  ): void {
    this.selectBySid(sid)
      .then((row) => {
        if (!row || row.expires_at <= Date.now()) {
          callback(null, null);
          return;
        }
        callback(null, JSON.parse(row.sess) as session.SessionData);
      })
      .catch((error: unknown) => callback(error));
  }

  override set(sid: string, sess: session.SessionData, callback?: Callback): void {
    const row = { sid, sess: JSON.stringify(sess), expires_at: this.expiry(sess) };
    this.writtenExpiry.set(sid, row.expires_at);
    this.db
      .insertInto('sessions')
      .values(row)
      .onConflict((oc) =>
        oc.column('sid').doUpdateSet({ sess: row.sess, expires_at: row.expires_at }),
      )
      .execute()
      .then(() => callback?.())
      .catch((error: unknown) => callback?.(error));
  }

  override destroy(sid: string, callback?: Callback): void {
    this.writtenExpiry.delete(sid);
    this.db
      .deleteFrom('sessions')
      .where('sid', '=', sid)
      .execute()
      .then(() => callback?.())
      .catch((error: unknown) => callback?.(error));
  }

  /**
   * Extend a session's expiry. express-session calls this on every request that leaves the
   * session unchanged. With non-rolling cookies the expiry stays the same, so no write happens
   * while the expiry this process last wrote for the session is within TOUCH_SLACK_MS of it.
   */
  override touch(sid: string, sess: session.SessionData, callback?: Callback): void {
    const expiresAt = this.expiry(sess);
    const written = this.writtenExpiry.get(sid);
    if (written !== undefined && Math.abs(written - expiresAt) < TOUCH_SLACK_MS) {
      callback?.();
      return;
    }
    this.writtenExpiry.set(sid, expiresAt);
    this.db
      .updateTable('sessions')
      .set({ expires_at: expiresAt })
      .where('sid', '=', sid)
      .execute()
      .then(() => callback?.())
      .catch((error: unknown) => callback?.(error));
  }

  /** Delete expired sessions. */
  async prune(): Promise<void> {
    await this.db.deleteFrom('sessions').where('expires_at', '<=', Date.now()).execute();
  }

  close(): void {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
  }
}
