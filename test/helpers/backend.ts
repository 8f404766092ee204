import { createHash } from 'node:crypto';
import pg from 'pg';

export const TEST_POSTGRES_URL =
  process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Every database and Redis key the tests create starts with this, so clean-up finds them. */
export const TEST_NAME_PREFIX = 's3gate_test_';

export function usesPostgres(): boolean {
  return process.env.S3GATE_TEST_BACKEND === 'postgres';
}

/**
 * Variables that put one test stack on PostgreSQL and Redis. The database and the key prefix
 * are derived from the data directory, so a restart with the same directory finds the same data.
 */
export async function postgresBackendEnv(dataDir: string): Promise<Record<string, string>> {
  const name = TEST_NAME_PREFIX + createHash('sha256').update(dataDir).digest('hex').slice(0, 16);
  const admin = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await admin.connect();
  try {
    const exists = await admin.query('select 1 from pg_database where datname = $1', [name]);
    if (exists.rowCount === 0) await admin.query(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(TEST_POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    DATABASE_URL: url.toString(),
    REDIS_URL: TEST_REDIS_URL,
    REDIS_KEY_PREFIX: `${name}:`,
    SESSION_SECRET: 'test-session-secret-with-at-least-32-characters',
  };
}
