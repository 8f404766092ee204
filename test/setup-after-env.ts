import { removeDataDirs } from './helpers/stack';

// Each test file's temporary data directories go once its tests are done.
afterAll(() => {
  removeDataDirs();
});
