import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type Request, type RequestHandler, type Response, type Router } from 'express';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { HttpError } from '../errors';
import type { UploadedImages } from '../images/upload-handler';
import type { S3Operation } from '../storage/s3-errors';
import type { UrlSigner } from '../storage/url-signer';

/** Shortest METRICS_TOKEN accepted, so that guessing it over the network is hopeless. */
export const MIN_METRICS_TOKEN_LENGTH = 16;

/** Options of `createMetrics`. */
export interface MetricsOptions {
  /** Signer whose memo cache hits and misses and clamped lifetimes are reported. Default none. */
  signer?: Pick<UrlSigner, 'stats'>;
  /**
   * Bearer token that scrapers send as `Authorization: Bearer <token>`, at least 16 characters.
   * Without it, `/metrics` serves only clients on the loopback interface whose request carries
   * no `Forwarded`, `X-Forwarded-For` or `X-Real-IP` header, because a reverse proxy on the same
   * machine connects from loopback too and adds such a header.
   */
  token?: string | undefined;
  /** Also report Node's process metrics: CPU, memory, event loop delay, GC. Default true. */
  processMetrics?: boolean;
}

/** The metrics of one app instance, in their own registry. */
export interface Metrics {
  /** Registry with every metric of this instance; not prom-client's global default registry. */
  registry: Registry;
  /** Middleware that counts each request by method, route and status, and times it. Mount it first. */
  countRequests: RequestHandler;
  /**
   * Middleware for an upload route, mounted before the upload handler: it times the request by
   * status and records the size of each stored image.
   */
  observeUploads: RequestHandler;
  /** Count one S3 failure, already translated by `translateS3Error`. */
  countS3Error: (failure: HttpError, operation: S3Operation) => void;
  /** Router with `GET /metrics` in the Prometheus text format, protected as `token` describes. */
  router: Router;
}

/** Route label for requests that matched no route, such as static files and unknown paths. */
const NO_ROUTE = '(none)';

const KIB = 1024;
const UPLOAD_SIZE_BUCKETS = [16, 64, 256, 1024, 4096, 16384, 65536].map((k) => k * KIB);
const UPLOAD_DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Create the metrics of one app instance. Each call makes a new registry, so several apps in one
 * process (tests, say) never mix their numbers.
 *
 * @throws TypeError for a token shorter than 16 characters.
 */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const token = options.token;
  if (token !== undefined && token.length < MIN_METRICS_TOKEN_LENGTH) {
    throw new TypeError(
      `createMetrics: \`token\` must be at least ${MIN_METRICS_TOKEN_LENGTH} characters long. ` +
        'Generate one with `openssl rand -hex 32`.',
    );
  }
  const stats = (options.signer as { stats?: { hits?: unknown } } | undefined)?.stats;
  if (options.signer !== undefined && typeof stats?.hits !== 'number') {
    throw new TypeError('createMetrics: `signer` must be a signer from createUrlSigner.');
  }
  const registry = new Registry();
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry });

  const requests = new Counter({
    name: 's3gate_http_requests_total',
    help: 'HTTP requests by method, route and status code. Status 499 means the client went away first.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const requestDuration = new Histogram({
    name: 's3gate_http_request_duration_seconds',
    help: 'Time from the start of an HTTP request to the end of its response, by method and route.',
    labelNames: ['method', 'route'] as const,
    registers: [registry],
  });
  const s3Errors = new Counter({
    name: 's3gate_s3_errors_total',
    help: 'Failed S3 reads and writes by error kind (the lowercase error code, such as storage_timeout).',
    labelNames: ['operation', 'kind'] as const,
    registers: [registry],
  });
  const uploadDuration = new Histogram({
    name: 's3gate_upload_duration_seconds',
    help: 'Duration of upload requests by status code, from the upload route to the end of the response.',
    labelNames: ['status'] as const,
    buckets: UPLOAD_DURATION_BUCKETS,
    registers: [registry],
  });
  const uploadSize = new Histogram({
    name: 's3gate_upload_size_bytes',
    help: 'Size of each stored upload in bytes; the _sum is the total of bytes stored.',
    buckets: UPLOAD_SIZE_BUCKETS,
    registers: [registry],
  });
  if (options.signer) registerSignerMetrics(registry, options.signer);

  const countRequests: RequestHandler = (req, res, next) => {
    const stopTimer = requestDuration.startTimer();
    res.once('close', () => {
      const route = routeOf(req);
      const status = res.writableFinished ? String(res.statusCode) : '499';
      requests.inc({ method: req.method, route, status });
      stopTimer({ method: req.method, route });
    });
    next();
  };

  const observeUploads: RequestHandler = (_req, res, next) => {
    const stopTimer = uploadDuration.startTimer();
    res.once('close', () => {
      stopTimer({ status: res.writableFinished ? String(res.statusCode) : '499' });
      const uploaded = res.locals.uploadedImages as UploadedImages | undefined;
      for (const image of uploaded ?? []) uploadSize.observe(image.sizeBytes);
    });
    next();
  };

  const countS3Error = (failure: HttpError, operation: S3Operation) => {
    // A 304 is S3's reply to a conditional read, and a 499 means the client left. Neither is an S3 failure.
    if (failure.status === 304 || failure.status === 499) return;
    const code = typeof failure.code === 'string' ? failure.code : 'unknown';
    s3Errors.inc({ operation, kind: code.toLowerCase() });
  };

  const router = express.Router();
  router.get('/metrics', createMetricsEndpoint(registry, token));

  return { registry, countRequests, observeUploads, countS3Error, router };
}

/**
 * Report the signer's running totals. They are read from `signer.stats` at each scrape, so the
 * signer's warm path gains no work for the metrics.
 */
function registerSignerMetrics(registry: Registry, signer: Pick<UrlSigner, 'stats'>): void {
  const totals: [string, string, () => number][] = [
    [
      's3gate_signed_url_cache_hits_total',
      'Signed URLs served from the memo cache.',
      () => signer.stats.hits,
    ],
    [
      's3gate_signed_url_cache_misses_total',
      'Signed URLs that had to be signed.',
      () => signer.stats.misses,
    ],
    [
      's3gate_signed_url_lifetime_clamped_total',
      'Signed URLs whose lifetime was shortened to the expiry of temporary credentials.',
      () => signer.stats.clamped,
    ],
  ];
  for (const [name, help, read] of totals) {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  }
}

/**
 * Label a request with its route pattern, such as `/image/:id`, never with its path: ids in
 * paths would make a new time series per image.
 */
function routeOf(req: Request): string {
  const route = req.route as { path?: unknown } | undefined;
  return typeof route?.path === 'string' ? `${req.baseUrl}${route.path}` : NO_ROUTE;
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3})$/;
const PROXY_HEADERS = ['forwarded', 'x-forwarded-for', 'x-real-ip'];

/**
 * Tell whether the request comes straight from this machine. The socket address is used, never
 * X-Forwarded-For, which any client can send. A request relayed by a reverse proxy on this machine
 * also arrives from loopback, so a proxy header disqualifies it.
 */
function isDirectLoopback(req: Request): boolean {
  if (!LOOPBACK.test(req.socket.remoteAddress ?? '')) return false;
  return PROXY_HEADERS.every((name) => req.headers[name] === undefined);
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/**
 * Compare the bearer token in constant time. Both sides are hashed first, so the comparison
 * also takes the same time whatever the length of the token sent.
 */
function hasToken(req: Request, expectedDigest: Buffer): boolean {
  const match = /^Bearer +(\S+) *$/i.exec(req.get('authorization') ?? '');
  const sent = sha256(match?.[1] ?? '');
  return timingSafeEqual(sent, expectedDigest) && match !== null;
}

function createMetricsEndpoint(registry: Registry, token: string | undefined): RequestHandler {
  const expectedDigest = token === undefined ? undefined : sha256(token);

  return async (req: Request, res: Response) => {
    res.setHeader('Cache-Control', 'no-store');

    // Access: the token when one is set, else direct loopback clients only
    if (expectedDigest) {
      if (!hasToken(req, expectedDigest)) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="metrics"');
        res.status(401).type('text/plain').send('Send the metrics token as a Bearer token.\n');
        return;
      }
    } else if (!isDirectLoopback(req)) {
      res
        .status(403)
        .type('text/plain')
        .send(
          'Metrics are served to loopback clients only. Set METRICS_TOKEN to scrape from elsewhere.\n',
        );
      return;
    }

    res.type(registry.contentType).send(await registry.metrics());
  };
}
