const net = require('node:net');

const POSTGRES_URL = process.env.TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';

/** Resolve true when something accepts TCP connections at the URL's host and port. */
function reachable(url, defaultPort) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({
      host: hostname,
      port: Number(port || defaultPort),
      timeout: 2000,
    });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

const shared = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  // The AWS SDK warns once per process that Node 20 support ends in January 2027; the lock file pins it.
  setupFiles: ['<rootDir>/test/setup-env.ts'],
  setupFilesAfterEnv: ['<rootDir>/test/setup-after-env.ts'],
};

/**
 * Two projects: every suite on the embedded defaults (SQLite, database sessions), and the
 * integration suites again on PostgreSQL and Redis. Outside CI, the second project is left out
 * with a notice when either service is down; with CI=true it always runs, and fails if they are.
 */
module.exports = async () => {
  const ci = process.env.CI === 'true';
  const servicesUp = (await reachable(POSTGRES_URL, 5432)) && (await reachable(REDIS_URL, 6379));
  const projects = [
    {
      ...shared,
      displayName: 'sqlite',
      roots: ['<rootDir>/test'],
      // Scale-out tests and PostgreSQL and Redis faults need those services, so they run in the
      // second project only.
      testPathIgnorePatterns: [
        '/node_modules/',
        '<rootDir>/test/scale-out.test.ts',
        '<rootDir>/test/hardening/postgres-faults.test.ts',
        '<rootDir>/test/hardening/redis-faults.test.ts',
      ],
    },
  ];

  if (servicesUp || ci) {
    projects.push({
      ...shared,
      displayName: 'postgres+redis',
      roots: ['<rootDir>/test'],
      testMatch: [
        '<rootDir>/test/{redirect,auth,upload,scale-out,modes,cli-users}.test.ts',
        '<rootDir>/test/hardening/{postgres,redis}-faults.test.ts',
      ],
      setupFiles: [...shared.setupFiles, '<rootDir>/test/setup-postgres.ts'],
      globalTeardown: '<rootDir>/test/helpers/drop-test-databases.ts',
    });
  } else {
    process.stderr.write(
      `Skipping the PostgreSQL + Redis run: nothing answers at ${POSTGRES_URL} and ${REDIS_URL}. ` +
        'Start both (or set TEST_POSTGRES_URL and TEST_REDIS_URL) to run it.\n',
    );
  }
  // testTimeout is a global option; inside a project Jest ignores it.
  return { projects, testTimeout: 60000 };
};
