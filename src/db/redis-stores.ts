import { RedisStore as RedisSessionStore } from 'connect-redis';
import type { Store as RateLimitStore } from 'express-rate-limit';
import { RedisStore as RedisRateLimitStore } from 'rate-limit-redis';
import { createClient, type RedisClientType } from 'redis';
import type { Logger } from '../logger';

export interface RedisStores {
  client: RedisClientType;
  sessionStore: RedisSessionStore;
  rateLimitStore: RateLimitStore;
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
  const client: RedisClientType = createClient({
    url: options.url,
    socket: {
      connectTimeout: 5000,
      // Back off up to 5 s between reconnects; requests fail fast meanwhile (see disableOfflineQueue).
      reconnectStrategy: (retries) => Math.min(200 * 2 ** retries, 5000),
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

  const sessionStore = new RedisSessionStore({
    client,
    prefix: `${options.keyPrefix}sess:`,
    ttl: options.sessionTtlSeconds,
    // Cookies are not rolling, so each key gets its TTL when the session is saved and a touch
    // (an EXPIRE on every request) would set the same expiry again.
    disableTouch: true,
  });
  const rateLimitStore = new RedisRateLimitStore({
    sendCommand: (...args: string[]) => client.sendCommand(args),
    prefix: `${options.keyPrefix}login-limit:`,
  });

  return {
    client,
    sessionStore,
    rateLimitStore,
    close: async () => {
      if (client.isOpen) await client.close();
    },
  };
}
