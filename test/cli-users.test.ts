import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { verifyPassword } from '../src/auth/password';
import { UserRepository } from '../src/auth/user-repository';
import { loadConfig } from '../src/config';
import { openDatabase } from '../src/db/database';
import { postgresBackendEnv, usesPostgres } from './helpers/backend';
import { loggedInAgent, makeDataDir, startTestStack } from './helpers/stack';

const root = path.join(__dirname, '..');
const CLI = path.join(root, 'dist', 'cli', 'users.js');

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Settings for one CLI run against a fresh data directory: SQLite in it, or in the
 * postgres+redis project a PostgreSQL database derived from it, as the app would use.
 */
async function backendEnv(dataDir = makeDataDir()): Promise<Record<string, string>> {
  const backend = usesPostgres() ? await postgresBackendEnv(dataDir) : {};
  return { DATA_DIR: dataDir, ...backend };
}

/** Run a command line of the compiled CLI, or of `npm run --silent users`, with `stdin` piped in. */
function run(
  command: string,
  args: string[],
  env: Record<string, string>,
  stdin = '',
): Promise<CliResult> {
  // The backend comes from `env` only, never from the environment of the test run.
  const parentEnv = { ...process.env };
  delete parentEnv.DATABASE_URL;
  const child = spawn(command, args, { cwd: root, env: { ...parentEnv, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(stdin);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      resolve({ code, stdout, stderr });
    });
  });
}

function users(args: string[], env: Record<string, string>, stdin = ''): Promise<CliResult> {
  return run(process.execPath, [CLI, ...args], env, stdin);
}

/** Check a password against the stored hash, through the app's own config and database. */
async function passwordWorks(
  env: Record<string, string>,
  username: string,
  password: string,
): Promise<boolean> {
  const config = loadConfig(env);
  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    sqlitePath: path.join(config.dataDir, 's3gate.sqlite'),
  });
  try {
    const user = await new UserRepository(database.db).findForLogin(username);
    return user !== undefined && (await verifyPassword(user.passwordHash, password));
  } finally {
    await database.close();
  }
}

beforeAll(() => {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'pipe' });
}, 120_000);

describe('users add', () => {
  it('creates a member from the password on stdin', async () => {
    const env = await backendEnv();
    const added = await users(['add', 'carol'], env, 'carol-password\n');
    const listed = await users(['list'], env);

    expect(added).toMatchObject({ code: 0, stdout: 'Added carol as a member.\n', stderr: '' });
    expect(listed.stdout).toMatch(/^carol +member +\d{4}-\d\d-\d\dT/m);
    expect(await passwordWorks(env, 'carol', 'carol-password')).toBe(true);
  });

  it('creates an administrator with --admin', async () => {
    const env = await backendEnv();
    const added = await users(['add', 'dana', '--admin'], env, 'dana-password\n');

    expect(added.code).toBe(0);
    expect((await users(['list'], env)).stdout).toMatch(/^dana +admin /m);
  });

  it('creates an account that signs in to the app', async () => {
    const env = await backendEnv();
    await users(['add', 'erin'], env, 'erin-password\n');
    const stack = await startTestStack(env);
    try {
      await expect(loggedInAgent(stack.url, 'erin', 'erin-password')).resolves.toBeDefined();
    } finally {
      await stack.stop();
    }
  });

  it('reads only the first line and drops a trailing CR', async () => {
    const env = await backendEnv();
    await users(['add', 'fay'], env, 'fay-password\r\nsecond line\n');

    expect(await passwordWorks(env, 'fay', 'fay-password')).toBe(true);
  });

  it('exits 1 for a name already taken, keeping the first password', async () => {
    const env = await backendEnv();
    await users(['add', 'gus'], env, 'gus-password\n');
    const again = await users(['add', 'gus'], env, 'other-password\n');

    expect(again.code).toBe(1);
    expect(again.stderr).toBe('A user named "gus" already exists.\n');
    expect(await passwordWorks(env, 'gus', 'gus-password')).toBe(true);
  });

  it('exits 1 for a password that is too short', async () => {
    const env = await backendEnv();
    const result = await users(['add', 'hal'], env, 'short\n');

    expect(result.code).toBe(1);
    expect(result.stderr).toBe('Password must be 8 to 1024 characters long.\n');
    expect((await users(['list'], env)).stdout).not.toMatch(/^hal /m);
  });

  it('exits 1 for an empty stdin', async () => {
    const result = await users(['add', 'ida'], await backendEnv(), '');

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^No password on standard input\./);
  });

  it('exits 1 for an invalid user name, before reading a password', async () => {
    const result = await users(['add', 'no spaces'], await backendEnv(), 'valid-password\n');

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^Invalid user name "no spaces"/);
  });
});

describe('users remove', () => {
  it('deletes the account', async () => {
    const env = await backendEnv();
    await users(['add', 'jay'], env, 'jay-password\n');
    const removed = await users(['remove', 'jay'], env);

    expect(removed.code).toBe(0);
    expect(removed.stdout).toMatch(/^Removed jay\./);
    expect((await users(['list'], env)).stdout).not.toMatch(/^jay /m);
  });

  it('exits 1 for an unknown user', async () => {
    const result = await users(['remove', 'nobody'], await backendEnv());

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^No user named "nobody"\./);
  });

  it('exits 1 for the last administrator', async () => {
    const env = await backendEnv();
    await users(['add', 'kim', '--admin'], env, 'kim-password\n');
    const result = await users(['remove', 'kim'], env);

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^kim is the last administrator\./);
    expect((await users(['list'], env)).stdout).toMatch(/^kim +admin /m);
  });
});

describe('users reset-password', () => {
  it('replaces the password', async () => {
    const env = await backendEnv();
    await users(['add', 'lee'], env, 'old-password\n');
    const reset = await users(['reset-password', 'lee'], env, 'new-password\n');

    expect(reset.code).toBe(0);
    expect(reset.stdout).toContain('signed-in sessions stop working at their next request');
    expect(await passwordWorks(env, 'lee', 'new-password')).toBe(true);
    expect(await passwordWorks(env, 'lee', 'old-password')).toBe(false);
  });

  it('exits 1 for an unknown user', async () => {
    const result = await users(['reset-password', 'nobody'], await backendEnv(), 'new-password\n');

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^No user named "nobody"\./);
  });

  it('keeps the old password when the new one is too short', async () => {
    const env = await backendEnv();
    await users(['add', 'max'], env, 'old-password\n');
    const reset = await users(['reset-password', 'max'], env, 'short\n');

    expect(reset.code).toBe(1);
    expect(await passwordWorks(env, 'max', 'old-password')).toBe(true);
  });
});

describe('users command line', () => {
  it('exits 2 for a password given as an argument', async () => {
    const result = await users(['add', 'ned', 'secret-password'], await backendEnv());

    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/Passwords are never taken from the command line/);
  });

  it('exits 2 for an unknown command, with the usage', async () => {
    const result = await users(['rename', 'a', 'b'], await backendEnv());

    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^Unknown command "rename"\.\n\nUsage: npm run users/);
  });

  it('exits 2 without a command, with the usage', async () => {
    const result = await users([], await backendEnv());

    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^Missing command\.\n\nUsage: npm run users -- <command>/);
  });

  it.each(['--help', '-h'])('prints the usage and exits 0 for %s', async (flag) => {
    const result = await users([flag], await backendEnv());

    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: npm run users -- <command>/);
    expect(result.stderr).toBe('');
  });

  it('exits 1 for an invalid configuration, naming the variable', async () => {
    const env = { ...(await backendEnv()), SIGNED_URL_WINDOW_SECONDS: 'hourly' };
    const result = await users(['list'], env);

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^Invalid configuration:\n {2}- SIGNED_URL_WINDOW_SECONDS/);
  });

  it('needs no SESSION_SECRET with DATABASE_URL', async () => {
    // The app requires the secret with DATABASE_URL; the CLI signs no cookies.
    const dataDir = makeDataDir();
    const { SESSION_SECRET: _unused, ...postgres } = await postgresBackendEnv(dataDir);
    const result = await users(['list'], { DATA_DIR: dataDir, ...postgres });

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('runs through npm run users, building first', async () => {
    const env = await backendEnv();
    const added = await run(
      'npm',
      ['run', '--silent', 'users', '--', 'add', 'ola'],
      env,
      'ola-password\n',
    );

    expect(added).toMatchObject({ code: 0, stdout: 'Added ola as a member.\n' });
  }, 120_000);
});
