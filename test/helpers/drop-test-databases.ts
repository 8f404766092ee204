import pg from 'pg';
import { createClient } from 'redis';
import { TEST_NAME_PREFIX, TEST_POSTGRES_URL, TEST_REDIS_URL } from './backend';

/** Jest global teardown: drop the databases and Redis keys that the PostgreSQL run created. */
export default async function dropTestDatabases(): Promise<void> {
  const admin = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ datname: string }>(
      'select datname from pg_database where datname like $1',
      [`${TEST_NAME_PREFIX}%`],
    );
    for (const { datname } of rows)
      await admin.query(`drop database if exists "${datname}" with (force)`);
  } finally {
    await admin.end();
  }

  const redis = createClient({ url: TEST_REDIS_URL });
  await redis.connect();
  try {
    for await (const keys of redis.scanIterator({ MATCH: `${TEST_NAME_PREFIX}*`, COUNT: 500 })) {
      if (keys.length > 0) await redis.del(keys);
    }
  } finally {
    await redis.close();
  }
}
