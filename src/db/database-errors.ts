import { errors, type HttpError } from '../errors';

// SQLite result codes that mean the file cannot be written or opened now, not that the query is wrong.
const SQLITE_UNAVAILABLE = new Set([
  'SQLITE_BUSY',
  'SQLITE_LOCKED',
  'SQLITE_READONLY',
  'SQLITE_IOERR',
  'SQLITE_CANTOPEN',
  'SQLITE_FULL',
  'SQLITE_PROTOCOL',
]);

// Socket errors from the PostgreSQL driver.
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
]);

/**
 * Translate an error from SQLite or PostgreSQL into a 503 when the database is unreachable or
 * read-only. Anything else (a bug, a constraint) is left to the generic 500.
 */
export function translateDatabaseError(error: unknown): HttpError | undefined {
  // Read the fields instead of testing `instanceof Error`: socket errors from Node's own realm
  // fail that test inside a vm context such as Jest's.
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code !== 'string') {
    // pg reports a closed pool, a dropped connection and its own timeouts without a code.
    return typeof message === 'string' &&
      /Connection terminated|Cannot use a pool after calling end|timeout exceeded when trying to connect|Query read timeout/i.test(
        message,
      )
      ? errors.databaseUnavailable()
      : undefined;
  }
  const sqliteBase = code.replace(/^(SQLITE_[A-Z]+)_.*$/, '$1');
  // These PostgreSQL SQLSTATEs mean that the database cannot serve now, whatever the query.
  // Class 08 is a connection exception and class 53 a lack of resources. 57P01 to 57P05 cover
  // shutdown, crash recovery, a dropped database and an idle timeout. 3D000 says the database
  // does not exist, as after a drop. The request was fine, and an operator has to act.
  if (
    SQLITE_UNAVAILABLE.has(sqliteBase) ||
    CONNECTION_CODES.has(code) ||
    /^(08|53)[0-9A-Z]{3}$/.test(code) ||
    /^57P0[1-5]$/.test(code) ||
    code === '3D000'
  ) {
    return errors.databaseUnavailable();
  }
  return undefined;
}
