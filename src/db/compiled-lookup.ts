import { CompiledQuery, type Compilable, type Kysely } from 'kysely';
import type { Database } from './schema';

/**
 * Compile a single-parameter lookup once and run it with a new value each time. Building and
 * compiling a Kysely query costs more than SQLite's own work for a primary-key read (a profile
 * of the redirect route put Kysely at about an eighth of its CPU time), and the session, user
 * and image lookups run on every image request.
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
  return async (value: string) => {
    const result = await db.executeQuery<Row>(CompiledQuery.raw(compiled.sql, [value]));
    return result.rows[0];
  };
}
