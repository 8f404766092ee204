// Runs the integration suites of this project on PostgreSQL and Redis; see test/helpers/backend.ts.
process.env.S3GATE_TEST_BACKEND = 'postgres';
