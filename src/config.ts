import path from 'node:path';
import proxyaddr from 'proxy-addr';
import { z } from 'zod';

/** SigV4 rejects presigned URLs that live longer than seven days. */
export const MAX_URL_LIFETIME_SECONDS = 7 * 24 * 60 * 60;

const DELIVERY_MODES = ['redirect', 'proxy'] as const;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const booleanString = z
  .enum(['true', 'false', '1', '0'])
  .transform((v) => v === 'true' || v === '1');
const positiveInt = z.coerce.number().int().positive();
/** Node's timers hold at most 2^31 - 1 ms (about 24.8 days); a larger delay silently becomes 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const timerMs = positiveInt.max(
  MAX_TIMER_MS,
  `must be at most ${MAX_TIMER_MS} ms (Node's timer limit)`,
);
const timerSeconds = positiveInt.max(
  Math.floor(MAX_TIMER_MS / 1000),
  `must be at most ${Math.floor(MAX_TIMER_MS / 1000)} s (Node's timer limit)`,
);
const TEN_YEARS_SECONDS = 10 * 365 * 24 * 60 * 60;
const nonNegativeInt = z.coerce.number().int().nonnegative();
const port = z.coerce.number().int().min(0).max(65535);

type ParsePayload = z.core.ParsePayload;

/**
 * Build a `when` condition that runs a cross-variable check as soon as the variables it reads are
 * valid. By default zod skips such a check while any variable is invalid, which would hide its
 * problem from the start-up list until the others are fixed.
 */
function whenValid(names: readonly string[]): (payload: ParsePayload) => boolean {
  return (payload) => !payload.issues.some((issue) => names.includes(String(issue.path?.[0])));
}

/**
 * The environment variables s3gate reads, each with the default used in embedded mode.
 * Every variable is documented in the README's configuration table.
 */
const envSchema = z
  .object({
    NODE_ENV: z.string().default('development'),
    HOST: z.string().min(1).default('127.0.0.1'),
    PORT: port.default(3000),
    DATA_DIR: z.string().min(1).default('data'),
    LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
    SHUTDOWN_TIMEOUT_MS: timerMs.default(25000),
    TRUST_PROXY: z.string().optional(),

    DELIVERY_MODE: z.enum(DELIVERY_MODES).default('redirect'),

    S3_BUCKET: z.string().min(3).max(63).optional(),
    S3_REGION: z.string().min(1).default('us-east-1'),
    S3_ENDPOINT: z.url().optional(),
    S3_PUBLIC_ENDPOINT: z.url().optional(),
    S3_FORCE_PATH_STYLE: booleanString.optional(),
    S3_KEY_PREFIX: z
      .string()
      // A "." or ".." segment is removed from the path by URL parsers, browsers included, so a
      // signed URL would no longer match its signature.
      .regex(
        /^((?!\.{1,2}\/)[A-Za-z0-9._-]+\/)*$/,
        'must be empty or path segments ending in "/", like images/, with no "." or ".." segment',
      )
      .default('images/'),
    S3_CONNECT_TIMEOUT_MS: timerMs.default(3000),
    S3_REQUEST_TIMEOUT_MS: timerMs.default(30000),
    S3_MAX_SOCKETS: positiveInt.max(10000).default(50),
    EMBEDDED_S3_PORT: port.default(4569),

    SIGNED_URL_WINDOW_SECONDS: positiveInt.default(3600),
    SIGNED_URL_MIN_VALIDITY_SECONDS: nonNegativeInt.default(600),
    SIGNED_URL_CACHE_SIZE: positiveInt.max(10_000_000).default(10000),
    REDIRECT_CACHE: z.enum(['none', 'aligned']).default('none'),
    REDIRECT_CACHE_MARGIN_SECONDS: nonNegativeInt.max(MAX_URL_LIFETIME_SECONDS).default(60),

    IMAGE_MAX_BYTES: positiveInt.max(Number.MAX_SAFE_INTEGER).default(10 * 1024 * 1024),
    IMAGE_CACHE_MAX_AGE_SECONDS: positiveInt
      .max(TEN_YEARS_SECONDS, `must be at most ${TEN_YEARS_SECONDS} s (10 years)`)
      .default(31536000),

    SESSION_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    SESSION_MAX_AGE_SECONDS: positiveInt
      .max(TEN_YEARS_SECONDS, `must be at most ${TEN_YEARS_SECONDS} s (10 years)`)
      .default(7 * 24 * 60 * 60),
    LOGIN_MAX_FAILURES: positiveInt.max(1_000_000).default(10),
    LOGIN_FAILURE_WINDOW_SECONDS: timerSeconds.default(15 * 60),

    ADMIN_USERNAME: z.string().min(1).max(64).default('admin'),
    ADMIN_PASSWORD: z.string().min(8, 'must be at least 8 characters').max(1024).optional(),

    DATABASE_URL: z.string().optional(),
    REDIS_URL: z.string().optional(),
    REDIS_KEY_PREFIX: z.string().max(64).default('s3gate:'),
    WEB_CONCURRENCY: positiveInt.max(64).default(1),

    METRICS_ENABLED: booleanString.default(true),
    METRICS_TOKEN: z
      .string()
      .min(16, 'must be at least 16 characters; generate one with `openssl rand -hex 32`')
      .optional(),
  })
  // NOTE: zod skips this block while any variable is invalid, so its problems are listed only
  // after the others are fixed. The margin check below uses whenValid to avoid that.
  .superRefine((env, ctx) => {
    const lifetime = env.SIGNED_URL_WINDOW_SECONDS + env.SIGNED_URL_MIN_VALIDITY_SECONDS;
    if (lifetime > MAX_URL_LIFETIME_SECONDS) {
      ctx.addIssue({
        code: 'custom',
        path: ['SIGNED_URL_WINDOW_SECONDS'],
        message:
          `SIGNED_URL_WINDOW_SECONDS + SIGNED_URL_MIN_VALIDITY_SECONDS is ${lifetime} s, ` +
          `over the SigV4 limit of 7 days (${MAX_URL_LIFETIME_SECONDS} s); lower one of them`,
      });
    }
    if (env.S3_PUBLIC_ENDPOINT && !env.S3_ENDPOINT) {
      ctx.addIssue({
        code: 'custom',
        path: ['S3_PUBLIC_ENDPOINT'],
        message: 'is only used together with S3_ENDPOINT; set S3_ENDPOINT too, or remove it',
      });
    }
    if (env.S3_ENDPOINT && !env.S3_BUCKET) {
      ctx.addIssue({
        code: 'custom',
        path: ['S3_BUCKET'],
        message:
          'is required when S3_ENDPOINT is set; without both, the embedded S3 server is used',
      });
    }
    const trustProxyProblem = checkTrustProxy(env.TRUST_PROXY);
    if (trustProxyProblem) {
      ctx.addIssue({ code: 'custom', path: ['TRUST_PROXY'], message: trustProxyProblem });
    }
    if (env.REDIS_URL && !/^rediss?:\/\//.test(env.REDIS_URL)) {
      ctx.addIssue({
        code: 'custom',
        path: ['REDIS_URL'],
        message: 'must be a redis:// or rediss:// URL',
      });
    }
    if (env.WEB_CONCURRENCY > 1 && !env.S3_BUCKET) {
      ctx.addIssue({
        code: 'custom',
        path: ['WEB_CONCURRENCY'],
        message:
          'above 1 needs an external S3 bucket (S3_BUCKET): the embedded S3 server runs in one process only',
      });
    }
    if (env.DATABASE_URL && !/^postgres(ql)?:\/\//.test(env.DATABASE_URL)) {
      ctx.addIssue({
        code: 'custom',
        path: ['DATABASE_URL'],
        message: 'must be a postgres:// or postgresql:// URL',
      });
    }
  })
  .superRefine(
    (env, ctx) => {
      // The aligned 302 is cached for the URL's remaining life less the margin. No URL has more
      // than `lifetime` seconds left, so a margin of `lifetime` or more means no 302 is cached.
      const windowSeconds = env.SIGNED_URL_WINDOW_SECONDS;
      const minValidity = env.SIGNED_URL_MIN_VALIDITY_SECONDS;
      const lifetime = windowSeconds + minValidity;
      if (env.REDIRECT_CACHE !== 'aligned' || env.REDIRECT_CACHE_MARGIN_SECONDS < lifetime) return;
      ctx.addIssue({
        code: 'custom',
        path: ['REDIRECT_CACHE_MARGIN_SECONDS'],
        message:
          `must be less than the signed URL lifetime of ${lifetime} s ` +
          `(SIGNED_URL_WINDOW_SECONDS ${windowSeconds} + SIGNED_URL_MIN_VALIDITY_SECONDS ${minValidity}), ` +
          'or REDIRECT_CACHE=aligned never caches a redirect; ' +
          `set REDIRECT_CACHE_MARGIN_SECONDS to ${minValidity} or less to cache every redirect`,
      });
    },
    {
      when: whenValid([
        'REDIRECT_CACHE',
        'REDIRECT_CACHE_MARGIN_SECONDS',
        'SIGNED_URL_WINDOW_SECONDS',
        'SIGNED_URL_MIN_VALIDITY_SECONDS',
      ]),
    },
  );

export type DeliveryMode = (typeof DELIVERY_MODES)[number];

/** Settings for the S3 bucket, or for the embedded S3 server when no bucket is configured. */
export interface S3Config {
  /** True when s3gate starts its own S3-compatible server on loopback. */
  embedded: boolean;
  bucket: string;
  region: string;
  /** Endpoint the server uses; undefined means AWS's regional endpoint. */
  endpoint: string | undefined;
  /** Endpoint that browsers use in signed URLs, when it differs from `endpoint`. */
  publicEndpoint: string | undefined;
  forcePathStyle: boolean;
  keyPrefix: string;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  maxSockets: number;
  embeddedPort: number;
}

export interface Config {
  production: boolean;
  host: string;
  port: number;
  dataDir: string;
  logLevel: (typeof LOG_LEVELS)[number];
  /** Time that open requests get to finish after SIGTERM or SIGINT, before the process exits anyway. */
  shutdownTimeoutMs: number;
  /** Value for Express's `trust proxy` setting; false means the client's own X-Forwarded-* are ignored. */
  trustProxy: boolean | number | string;
  deliveryMode: DeliveryMode;
  s3: S3Config;
  signedUrl: { windowSeconds: number; minValiditySeconds: number; cacheSize: number };
  /**
   * "none": the 302 is never cached. "aligned": the 302 is cached privately until the signed URL
   * expires, less `marginSeconds`, and the image exactly until the URL expires.
   */
  redirectCache: { mode: 'none' | 'aligned'; marginSeconds: number };
  images: { maxBytes: number; cacheMaxAgeSeconds: number };
  session: { secret: string | undefined; maxAgeSeconds: number };
  login: { maxFailures: number; failureWindowSeconds: number };
  admin: { username: string; password: string | undefined };
  databaseUrl: string | undefined;
  /** Sessions and login limits go to Redis when set; otherwise sessions use the database. */
  redis: { url: string | undefined; keyPrefix: string };
  /** Number of worker processes (node:cluster); 1 runs the app in the main process. */
  webConcurrency: number;
  /** `GET /metrics`: served when enabled, to bearers of `token`, or to loopback clients without one. */
  metrics: { enabled: boolean; token: string | undefined };
}

/** Thrown when the environment is invalid; the message lists every problem at once. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const EMBEDDED_BUCKET = 's3gate-images';

/** Explain why a TRUST_PROXY value is not one Express accepts, or return undefined. */
function checkTrustProxy(value: string | undefined): string | undefined {
  const parsed = parseTrustProxy(value);
  if (typeof parsed !== 'string') return undefined;
  try {
    // Express compiles the same list with proxy-addr and would throw at start.
    proxyaddr.compile(parsed.split(',').map((part) => part.trim()));
    return undefined;
  } catch (error) {
    return (
      `${error instanceof Error ? error.message : String(error)}; use true, a hop count, or a ` +
      'comma-separated list of addresses, subnets, loopback, linklocal or uniquelocal'
    );
  }
}

/**
 * Parse Express's `trust proxy` forms: true/false, a hop count, or a list of addresses,
 * subnets and the names `loopback`, `linklocal` and `uniquelocal`.
 */
function parseTrustProxy(value: string | undefined): boolean | number | string {
  if (value === undefined || value === '' || value === 'false') return false;
  if (value === 'true') return true;
  if (/^\d+$/.test(value)) return Number(value);
  return value;
}

export interface LoadConfigOptions {
  /**
   * Whether DATABASE_URL needs SESSION_SECRET. Default true. The users CLI signs no cookies and
   * passes false.
   */
  sessionSecretRequired?: boolean;
}

/**
 * Read and validate the environment once at start.
 * Every other module takes its settings from the returned object and never reads process.env.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  options: LoadConfigOptions = {},
): Config {
  // Empty strings count as unset, so `VAR=` in an env file keeps the default.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''));
  const parsed = envSchema.safeParse(present);
  const problems = parsed.success
    ? []
    : parsed.error.issues.map((issue) => {
        const name = issue.path.join('.');
        const value = env[name];
        const shown =
          value === undefined || /SECRET|PASSWORD|TOKEN/.test(name) ? '' : ` (got "${value}")`;
        return `${name}${shown}: ${issue.message}`;
      });

  // Checked here rather than in the schema, so that it is listed even when other variables are
  // invalid. Without DATABASE_URL (SQLite, one instance) the runtime keeps a secret in DATA_DIR.
  if ((options.sessionSecretRequired ?? true) && present.DATABASE_URL && !present.SESSION_SECRET) {
    problems.push(
      'SESSION_SECRET: is required with DATABASE_URL, because every instance must sign cookies ' +
        'with the same secret; set it to a random string of at least 32 characters, for example ' +
        'from `openssl rand -hex 32`',
    );
  }
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems);
  const e = parsed.data;
  const embedded = !e.S3_BUCKET;

  return {
    production: e.NODE_ENV === 'production',
    host: e.HOST,
    port: e.PORT,
    dataDir: path.resolve(e.DATA_DIR),
    logLevel: e.LOG_LEVEL,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    trustProxy: parseTrustProxy(e.TRUST_PROXY),
    deliveryMode: e.DELIVERY_MODE,
    s3: {
      embedded,
      bucket: e.S3_BUCKET ?? EMBEDDED_BUCKET,
      region: e.S3_REGION,
      endpoint: e.S3_ENDPOINT,
      publicEndpoint: e.S3_PUBLIC_ENDPOINT,
      // Custom endpoints (MinIO, the embedded server) rarely have wildcard DNS for bucket hosts.
      forcePathStyle: e.S3_FORCE_PATH_STYLE ?? (embedded || e.S3_ENDPOINT !== undefined),
      keyPrefix: e.S3_KEY_PREFIX,
      connectTimeoutMs: e.S3_CONNECT_TIMEOUT_MS,
      requestTimeoutMs: e.S3_REQUEST_TIMEOUT_MS,
      maxSockets: e.S3_MAX_SOCKETS,
      embeddedPort: e.EMBEDDED_S3_PORT,
    },
    signedUrl: {
      windowSeconds: e.SIGNED_URL_WINDOW_SECONDS,
      minValiditySeconds: e.SIGNED_URL_MIN_VALIDITY_SECONDS,
      cacheSize: e.SIGNED_URL_CACHE_SIZE,
    },
    redirectCache: { mode: e.REDIRECT_CACHE, marginSeconds: e.REDIRECT_CACHE_MARGIN_SECONDS },
    images: { maxBytes: e.IMAGE_MAX_BYTES, cacheMaxAgeSeconds: e.IMAGE_CACHE_MAX_AGE_SECONDS },
    session: { secret: e.SESSION_SECRET, maxAgeSeconds: e.SESSION_MAX_AGE_SECONDS },
    login: {
      maxFailures: e.LOGIN_MAX_FAILURES,
      failureWindowSeconds: e.LOGIN_FAILURE_WINDOW_SECONDS,
    },
    admin: { username: e.ADMIN_USERNAME, password: e.ADMIN_PASSWORD },
    databaseUrl: e.DATABASE_URL,
    redis: { url: e.REDIS_URL, keyPrefix: e.REDIS_KEY_PREFIX },
    webConcurrency: e.WEB_CONCURRENCY,
    metrics: { enabled: e.METRICS_ENABLED, token: e.METRICS_TOKEN },
  };
}
