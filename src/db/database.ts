import fs from 'node:fs';
import path from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import { LRUCache } from 'lru-cache';
import pg from 'pg';
import { allowDirectReads } from './compiled-lookup';
import { migrationProvider } from './migrations';
import type { Database } from './schema';

export type Dialect = 'sqlite' | 'postgres';

/** How long connecting to PostgreSQL, and each query, may take before the request fails. */
export const POSTGRES_TIMEOUT_MS = 5000;

export interface DatabaseHandle {
  db: Kysely<Database>;
  dialect: Dialect;
  /** Run a trivial query; rejects when the database is unreachable. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** postgres:// URL; without it, SQLite at `sqlitePath`. */
  databaseUrl?: string | undefined;
  sqlitePath?: string;
  /**
   * Called when an idle PostgreSQL connection fails (the server restarted, a proxy cut it). The
   * pool drops that connection and opens a new one for the next query. Default: ignore it.
   */
  onIdleConnectionError?: (error: Error) => void;
}

// PostgreSQL returns int8 (bigint) as a string to avoid precision loss. Sizes and times in ms
// stay far below 2^53, so numbers are safe and keep both dialects returning the same types.
const PG_INT8_OID = 20;
function parseInt8(value: string): number {
  return Number(value);
}
// pg's typings key parsers by its TypeId enum; the OIDs arrive here as plain numbers.
const defaultTypeParser = pg.types.getTypeParser as (
  oid: number,
  format: string,
) => (value: string) => unknown;
const pgTypes = {
  getTypeParser: (oid: number, format?: string) =>
    oid === PG_INT8_OID ? parseInt8 : defaultTypeParser(oid, format ?? 'text'),
} as pg.CustomTypesConfig;

/**
 * Wrap better-sqlite3 so that each SQL text is compiled once. Kysely prepares a statement for
 * every query, and compiling it was the largest single cost of a session lookup in a profile.
 * Reusing a statement is safe here because queries run one at a time on this connection and
 * s3gate never iterates a result lazily (Kysely's `stream()`).
 */
function withStatementCache(sqlite: SqliteDatabase.Database): {
  close(): void;
  prepare(sql: string): SqliteDatabase.Statement;
} {
  const statements = new LRUCache<string, SqliteDatabase.Statement>({ max: 200 });
  return {
    close: () => sqlite.close(),
    prepare: (sql: string) => {
      let statement = statements.get(sql);
      if (!statement) {
        statement = sqlite.prepare(sql);
        statements.set(sql, statement);
      }
      return statement;
    },
  };
}

/**
 * Open the database and bring its schema up to date.
 */
export async function openDatabase(options: DatabaseOptions): Promise<DatabaseHandle> {
  let db: Kysely<Database>;
  let dialect: Dialect;

  if (options.databaseUrl) {
    dialect = 'postgres';
    const pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: 10,
      types: pgTypes,
      // A server that accepts connections and never replies would otherwise hold each request
      // forever: connecting and every query give up after these, and the request gets a 503.
      connectionTimeoutMillis: POSTGRES_TIMEOUT_MS,
      query_timeout: POSTGRES_TIMEOUT_MS,
      keepAlive: true,
    });
    // Without a listener, the 'error' event of an idle connection would crash the process.
    pool.on('error', (error) => options.onIdleConnectionError?.(error));
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  } else {
    dialect = 'sqlite';
    const file = options.sqlitePath ?? ':memory:';
    if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
    const sqlite = new SqliteDatabase(file);
    // WAL lets readers go on while a writer commits; the busy timeout rides out short write locks.
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = ON');
    const database = withStatementCache(sqlite);
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database }) });
    allowDirectReads(db, (sql) => database.prepare(sql));
  }

  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error } = await migrator.migrateToLatest();
  if (error) {
    await db.destroy();
    const reason = error instanceof Error ? error.message : JSON.stringify(error);
    throw new Error(`Database migration failed: ${reason}`, { cause: error });
  }

  return {
    db,
    dialect,
    ping: async () => {
      await db.selectNoFrom((eb) => eb.val(1).as('one')).execute();
    },
    close: () => db.destroy(),
  };
}
