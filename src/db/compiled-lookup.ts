import { CompiledQuery, type Compilable, type Kysely } from 'kysely';
import type { Database } from './schema';

/** A prepared statement that returns its first row synchronously (better-sqlite3's `get`). */
export interface DirectStatement {
  get(...parameters: unknown[]): unknown;
}

/** Kysely instances on SQLite, with a way to prepare statements on their one connection. */
const directReaders = new WeakMap<Kysely<Database>, (sql: string) => DirectStatement>();

/**
 * Let lookups on `db` run as prepared statements on its SQLite connection, without Kysely's
 * driver in between. `openDatabase` calls this for SQLite. It is safe because s3gate opens no
 * transaction after startup: a direct read between the statements of a transaction would see
 * that transaction's uncommitted rows. Keep it that way, or drop the direct path.
 */
export function allowDirectReads(
  db: Kysely<Database>,
  prepare: (sql: string) => DirectStatement,
): void {
  directReaders.set(db, prepare);
}

/**
 * Return a function that reads `PRAGMA data_version` on `db`'s SQLite connection, or undefined
 * on PostgreSQL. The value changes after another connection to the same file commits, and not
 * after this connection's own commits.
 */
export function dataVersionReader(db: Kysely<Database>): (() => number) | undefined {
  const prepare = directReaders.get(db);
  if (!prepare) return undefined;
  const statement = prepare('PRAGMA data_version');
  return () => (statement.get() as { data_version: number }).data_version;
}

/**
 * Compile a single-parameter lookup once and run it with a new value each time. Building and
 * compiling a Kysely query costs more than SQLite's own work for a primary-key read, and the
 * session, user and image lookups run on every image request. On SQLite the compiled SQL runs as
 * a prepared statement directly: Kysely's driver (a connection lock and several promise hops
 * per query) took about a tenth of the image route's CPU time in a profile.
 *
 * `build` receives a sample value and must use it as the query's only parameter.
 */
export function compileLookup<Row>(
  db: Kysely<Database>,
  build: (db: Kysely<Database>, value: string) => Compilable<Row>,
): (value: string) => Promise<Row | undefined> {
  const compiled = build(db, '').compile();
  if (compiled.parameters.length !== 1) {
    throw new TypeError(
      `compileLookup: expected one query parameter, got ${compiled.parameters.length}`,
    );
  }

  const prepare = directReaders.get(db);
  if (prepare) {
    const statement = prepare(compiled.sql);
    // async, so that an error from SQLite becomes a rejection like Kysely's.
    // eslint-disable-next-line @typescript-eslint/require-await
    return async (value: string) => statement.get(value) as Row | undefined;
  }
  return async (value: string) => {
    const result = await db.executeQuery<Row>(CompiledQuery.raw(compiled.sql, [value]));
    return result.rows[0];
  };
}
