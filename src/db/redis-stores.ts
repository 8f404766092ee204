import { RedisStore as RedisSessionStore } from 'connect-redis';
import type { Store as RateLimitStore } from 'express-rate-limit';
import { RedisStore as RedisRateLimitStore } from 'rate-limit-redis';
import {
  ClientClosedError,
  ClientOfflineError,
  ConnectionTimeoutError,
  createClient,
  ReconnectStrategyError,
  SocketClosedUnexpectedlyError,
  SocketTimeoutError,
  TimeoutError,
  TimeoutReadError,
  type RedisClientType,
} from 'redis';
import { errors, type HttpError } from '../errors';
import type { Logger } from '../logger';

/** Retries of the first connection before start-up fails: about 1.4 s of back-off for a refused port. */
const STARTUP_CONNECT_RETRIES = 3;

/** How long a Redis command may wait for its reply before the request fails with 503. */
export const REDIS_COMMAND_TIMEOUT_MS = 3000;

// node-redis errors that mean "Redis cannot be reached now", not "this command is wrong".
const REDIS_UNAVAILABLE = [
  ClientClosedError,
  ClientOfflineError,
  ConnectionTimeoutError,
  ReconnectStrategyError,
  SocketClosedUnexpectedlyError,
  SocketTimeoutError,
  TimeoutError,
  TimeoutReadError,
];

/**
 * Translate a node-redis error into a 503 when Redis is down, unreachable or too slow to reply,
 * so sessions fail as clearly as the database does. Anything else is left to the generic 500.
 */
export function translateRedisError(error: unknown): HttpError | undefined {
  // node-redis leaves `name` as "Error", so only the class identifies these errors.
  return REDIS_UNAVAILABLE.some((type) => error instanceof type)
    ? errors.sessionStoreUnavailable()
    : undefined;
}

export interface RedisStores {
  client: RedisClientType;
  sessionStore: RedisSessionStore;
  rateLimitStore: RateLimitStore;
  /** Send PING; rejects when Redis does not reply within REDIS_COMMAND_TIMEOUT_MS. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface RedisStoresOptions {
  url: string;
  /** Prefix of every key, so several apps can share one Redis. */
  keyPrefix: string;
  /** Session lifetime in seconds, used as the key TTL. */
  sessionTtlSeconds: number;
  logger: Logger;
}

/**
 * Connect to Redis and build the session store and the login-limit store on it, so that any
 * number of stateless instances share sessions and failure counts.
 */
export async function connectRedisStores(options: RedisStoresOptions): Promise<RedisStores> {
  const { logger } = options;
  let everReady = false;
  const client: RedisClientType = createClient({
    url: options.url,
    socket: {
      connectTimeout: 5000,
      // Back off up to 5 s between reconnects; requests fail fast meanwhile (see disableOfflineQueue).
      // Before the first connection, give up after a few retries, so start-up fails with the
      // error below rather than waiting for a Redis that may never come.
      reconnectStrategy: (retries, cause) => {
        if (everReady || retries < STARTUP_CONNECT_RETRIES)
          return Math.min(200 * 2 ** retries, 5000);
        // node-redis stops only for an Error of its own realm, and a socket error is not one
        // under Jest's vm, so wrap it.
        return new Error(cause.message, { cause });
      },
    },
    // Without a connection, fail commands at once instead of queueing them: a login then gets a
    // clear 5xx rather than hanging until the request times out.
    disableOfflineQueue: true,
  });

  // node-redis emits 'error' for every failed reconnect; log the first of each outage only.
  let connected = false;
  client.on('error', (error: unknown) => {
    if (connected) logger.error({ err: error }, 'Redis connection lost; reconnecting');
    connected = false;
  });
  client.on('ready', () => {
    if (!connected) logger.info('Redis connected');
    connected = true;
    everReady = true;
  });

  try {
    await client.connect();
  } catch (error) {
    throw new Error(
      `Could not connect to Redis at REDIS_URL: ${error instanceof Error ? error.message : String(error)}. ` +
        'Check that Redis is running and that the URL, password and TLS setting are right.',
      { cause: error },
    );
  }

  // Every command of the stores fails after the timeout, also one already sent: a Redis that
  // accepts connections and never replies would otherwise hold each request forever.
  // TODO: reconnect after repeated timeouts. A connection whose peer vanished without a reset
  // fails every command after the timeout until the operating system gives the socket up.
  const commands = client.withCommandOptions({
    timeout: REDIS_COMMAND_TIMEOUT_MS,
    rejectInFlight: true,
  });

  const sessionStore = new RedisSessionStore({
    client: commands,
    prefix: `${options.keyPrefix}sess:`,
    ttl: options.sessionTtlSeconds,
    // Cookies are not rolling, so each key gets its TTL when the session is saved and a touch
    // (an EXPIRE on every request) would set the same expiry again.
    disableTouch: true,
  });
  const rateLimitStore = new RedisRateLimitStore({
    sendCommand: (...args: string[]) => commands.sendCommand(args),
    prefix: `${options.keyPrefix}login-limit:`,
  });

  return {
    client,
    sessionStore,
    rateLimitStore,
    ping: async () => {
      await commands.ping();
    },
    close: async () => {
      if (client.isOpen) await client.close();
    },
  };
}
