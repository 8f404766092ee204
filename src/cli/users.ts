import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  InvalidUserError,
  USERNAME_PATTERN,
  UserRepository,
  type Role,
  type UserRecord,
} from '../auth/user-repository';
import { ConfigError, loadConfig } from '../config';
import { openDatabase } from '../db/database';
import { PasswordInputError, readPassword } from './read-password';

/** Exit codes: 0 done, 1 the command failed (unknown user, bad password, database down), 2 bad usage. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

const USAGE = `Usage: npm run users -- <command>

Commands:
  add <name> [--admin]    Create an account: a member (view only), or an administrator with --admin
  list                    List the accounts
  remove <name>           Delete an account; its sessions stop working at their next request
  reset-password <name>   Set a new password for an account

The password is prompted for with hidden input in a terminal, or read from the first line of
standard input otherwise. It is never taken from the command line.

The command uses the app's settings: SQLite in DATA_DIR (default ./data), or PostgreSQL when
DATABASE_URL is set.
`;

/** A mistake in the command line; the message is shown above the usage text. */
class UsageError extends Error {}

/** A failure that the operator can fix; the message is shown as it is. */
class CommandError extends Error {}

interface Command {
  name: 'add' | 'list' | 'remove' | 'reset-password';
  username: string | undefined;
  admin: boolean;
}

function parseCommand(argv: string[]): Command | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { admin: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  if (values.help === true) return 'help';
  if (positionals.length === 0) throw new UsageError('Missing command.');

  const [name, username, ...extra] = positionals;
  if (name !== 'add' && name !== 'list' && name !== 'remove' && name !== 'reset-password') {
    throw new UsageError(`Unknown command "${name ?? ''}".`);
  }
  if (name === 'list' && username !== undefined) {
    throw new UsageError('list takes no user name.');
  }
  if (name !== 'list' && username === undefined) {
    throw new UsageError(`${name} needs a user name.`);
  }
  if (extra.length > 0) {
    throw new UsageError(
      `Unexpected argument "${extra.join(' ')}". Passwords are never taken from the command line.`,
    );
  }
  if (values.admin === true && name !== 'add') {
    throw new UsageError('--admin only goes with add.');
  }
  return { name, username, admin: values.admin === true };
}

async function findUser(users: UserRepository, username: string): Promise<UserRecord> {
  const found = await users.findForLogin(username);
  if (!found)
    throw new CommandError(`No user named "${username}". List them with: npm run users -- list`);
  const { passwordHash, ...user } = found;
  return user;
}

async function addUser(users: UserRepository, username: string, role: Role): Promise<string> {
  // Check the name before asking for a password, so the operator does not type one in vain.
  if (!USERNAME_PATTERN.test(username)) {
    throw new CommandError(
      `Invalid user name "${username}": use 1 to 64 letters, digits, ".", "_", "-" or "@".`,
    );
  }
  if (await users.findForLogin(username)) {
    throw new CommandError(`A user named "${username}" already exists.`);
  }
  const password = await readPassword(`Password for ${username}: `, { confirm: true });
  const user = await users.create(username, password, role);
  return `Added ${user.username} as ${role === 'admin' ? 'an administrator' : 'a member'}.`;
}

async function listUsers(users: UserRepository): Promise<string> {
  const rows = [
    ['USERNAME', 'ROLE', 'CREATED'],
    ...(await users.list()).map((user) => [user.username, user.role, user.createdAt.toISOString()]),
  ];
  const widths = [0, 1].map((column) => Math.max(...rows.map((row) => row[column]?.length ?? 0)));
  return rows
    .map(([name = '', role = '', created = '']) =>
      [name.padEnd(widths[0] ?? 0), role.padEnd(widths[1] ?? 0), created].join('  '),
    )
    .join('\n');
}

async function removeUser(users: UserRepository, username: string): Promise<string> {
  const user = await findUser(users, username);
  if (user.role === 'admin' && (await users.countAdmins()) <= 1) {
    throw new CommandError(
      `${username} is the last administrator. Add another one first: npm run users -- add NAME --admin`,
    );
  }
  await users.remove(user.id);
  return `Removed ${username}. Their signed-in sessions stop working at their next request.`;
}

async function resetPassword(users: UserRepository, username: string): Promise<string> {
  const user = await findUser(users, username);
  const password = await readPassword(`New password for ${username}: `, { confirm: true });
  await users.setPassword(user.id, password);
  // Sessions signed in before the change no longer pass isSessionCurrent.
  return `Changed the password of ${username}. Their signed-in sessions stop working at their next request.`;
}

async function runCommand(command: Command): Promise<string> {
  // The CLI signs no cookies, so it runs with DATABASE_URL alone.
  const config = loadConfig(process.env, { sessionSecretRequired: false });
  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    sqlitePath: path.join(config.dataDir, 's3gate.sqlite'),
  });
  try {
    const users = new UserRepository(database.db);
    const username = command.username ?? '';
    switch (command.name) {
      case 'add':
        return await addUser(users, username, command.admin ? 'admin' : 'member');
      case 'list':
        return await listUsers(users);
      case 'remove':
        return await removeUser(users, username);
      case 'reset-password':
        return await resetPassword(users, username);
    }
  } finally {
    await database.close();
  }
}

/** Run the CLI with the arguments after the script name; resolves the exit code. */
export async function main(argv: string[]): Promise<number> {
  let command;
  try {
    command = parseCommand(argv);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return EXIT_USAGE;
  }
  if (command === 'help') {
    process.stdout.write(USAGE);
    return EXIT_OK;
  }

  try {
    process.stdout.write(`${await runCommand(command)}\n`);
    return EXIT_OK;
  } catch (error) {
    const known =
      error instanceof CommandError ||
      error instanceof InvalidUserError ||
      error instanceof PasswordInputError ||
      error instanceof ConfigError;
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(known ? `${message}\n` : `The command failed: ${message}\n`);
    return EXIT_FAILED;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
