/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testTimeout: 30000,
  // The AWS SDK warns once per process that Node 20 support ends in January 2027; the lock file pins it.
  setupFiles: ['<rootDir>/test/setup-env.ts'],
};
