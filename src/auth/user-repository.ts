import { randomUUID } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import { compileLookup } from '../db/compiled-lookup';
import type { Database, UsersTable } from '../db/schema';
import { hashPassword } from './password';

export type Role = 'admin' | 'member';

export interface UserRecord {
  id: string;
  username: string;
  role: Role;
  createdAt: Date;
  /** When the password last changed; sessions that signed in before then are no longer valid. */
  passwordChangedAt: Date | null;
}

/** Usernames: 1 to 64 letters, digits, dots, dashes, underscores or @. */
export const USERNAME_PATTERN = /^[A-Za-z0-9._@-]{1,64}$/;
export const MIN_PASSWORD_LENGTH = 8;
/** argon2 hashes any length, but a cap keeps a huge body from costing a hash of megabytes. */
export const MAX_PASSWORD_LENGTH = 1024;

/** Thrown for a new user whose name or password breaks the rules; the message is safe to show. */
export class InvalidUserError extends Error {
  override readonly name = 'InvalidUserError';
}

function toRecord(row: Selectable<UsersTable>): UserRecord {
  return {
    id: row.id,
    username: row.username,
    role: row.role,
    createdAt: new Date(row.created_at),
    passwordChangedAt: row.password_changed_at === null ? null : new Date(row.password_changed_at),
  };
}

export function validateNewUser(username: string, password: string): void {
  if (!USERNAME_PATTERN.test(username)) {
    throw new InvalidUserError(
      'Username must be 1 to 64 characters: letters, digits, ".", "_", "-" or "@".',
    );
  }
  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
    throw new InvalidUserError(
      `Password must be ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters long.`,
    );
  }
}

/** Stores accounts with argon2id password hashes. */
export class UserRepository {
  constructor(private readonly db: Kysely<Database>) {
    this.selectById = compileLookup(db, (d, id) =>
      d.selectFrom('users').selectAll().where('id', '=', id),
    );
  }

  private readonly selectById;

  async findById(id: string): Promise<UserRecord | undefined> {
    const row = await this.selectById(id);
    return row && toRecord(row);
  }

  /** Returns the user with the hash, for login only. */
  async findForLogin(
    username: string,
  ): Promise<(UserRecord & { passwordHash: string }) | undefined> {
    const row = await this.db
      .selectFrom('users')
      .selectAll()
      .where('username', '=', username)
      .executeTakeFirst();
    return row && { ...toRecord(row), passwordHash: row.password_hash };
  }

  async list(): Promise<UserRecord[]> {
    const rows = await this.db.selectFrom('users').selectAll().orderBy('username').execute();
    return rows.map(toRecord);
  }

  async countAdmins(): Promise<number> {
    const row = await this.db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<number | string>().as('count'))
      .where('role', '=', 'admin')
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }

  /** Create a user; throws InvalidUserError for a bad name or password or a name already taken. */
  async create(username: string, password: string, role: Role): Promise<UserRecord> {
    validateNewUser(username, password);
    if (await this.findForLogin(username)) {
      throw new InvalidUserError(`A user named "${username}" already exists.`);
    }
    const user: UserRecord = {
      id: randomUUID(),
      username,
      role,
      createdAt: new Date(),
      passwordChangedAt: null,
    };
    await this.db
      .insertInto('users')
      .values({
        id: user.id,
        username,
        password_hash: await hashPassword(password),
        role,
        created_at: user.createdAt.toISOString(),
      })
      .execute();
    return user;
  }

  /** Change a password. Sessions signed in with the old one end at their next request. */
  async setPassword(id: string, password: string): Promise<boolean> {
    validateNewUser('placeholder', password);
    const result = await this.db
      .updateTable('users')
      .set({
        password_hash: await hashPassword(password),
        password_changed_at: new Date().toISOString(),
      })
      .where('id', '=', id)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /** Delete a user. Their sessions stop working at the next request, because deserializeUser finds no user. */
  async remove(id: string): Promise<boolean> {
    const result = await this.db.deleteFrom('users').where('id', '=', id).executeTakeFirst();
    return result.numDeletedRows > 0n;
  }
}
