import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { LRUCache } from 'lru-cache';
import { MAX_URL_LIFETIME_SECONDS } from '../config';

/** Response headers that S3 sets from `response-*` query parameters of a signed URL. */
export interface ResponseOverrides {
  cacheControl?: string;
  /** Absolute expiry for the `Expires` header. */
  expires?: Date;
  contentDisposition?: string;
  contentType?: string;
}

export interface SignRequest {
  key: string;
  /** S3 checks the method in the signature, so a HEAD needs a URL signed for HeadObject. */
  method?: 'GET' | 'HEAD';
  overrides?: ResponseOverrides;
}

export interface UrlSignerOptions {
  /** Client whose endpoint is the one browsers reach; its credentials sign the URLs. */
  client: S3Client;
  bucket: string;
  /** Length of the signing window: every request within one window gets the same URL. */
  windowSeconds: number;
  /** Validity a URL keeps at least, even when handed out at the very end of its window. */
  minValiditySeconds: number;
  /** Maximum number of memoized URLs. Default 10,000. */
  cacheSize?: number;
  /** Clock in milliseconds; tests move it. */
  now?: () => number;
  /** Called once per credential expiry when a URL lifetime is shortened to fit it. */
  onLifetimeClamped?: (info: { lifetimeSeconds: number; credentialsExpireAt: Date }) => void;
}

export interface UrlSigner {
  sign(request: SignRequest): Promise<string>;
  /** Start of the current signing window, in seconds since the epoch. */
  windowStart(): number;
  readonly stats: { hits: number; misses: number; clamped: number };
}

/**
 * Create a signer that returns byte-identical presigned URLs for the whole of a time window.
 *
 * A browser caches an image under its full URL, signature included, so a fresh signature on
 * every page view would make every view a cache miss. Rounding the signing time down to the
 * window start makes the URL a pure function of (credentials, bucket, key, method, overrides,
 * window), which also holds across app instances that share credentials and settings.
 */
export function createUrlSigner(options: UrlSignerOptions): UrlSigner {
  const windowSeconds = options.windowSeconds;
  const lifetimeSeconds = windowSeconds + options.minValiditySeconds;
  if (lifetimeSeconds > MAX_URL_LIFETIME_SECONDS) {
    throw new RangeError(
      `Signed URL lifetime of ${lifetimeSeconds} s (window ${windowSeconds} s + minimum validity ` +
        `${options.minValiditySeconds} s) is over the SigV4 limit of ${MAX_URL_LIFETIME_SECONDS} s; ` +
        'shorten the window or the minimum validity.',
    );
  }
  const now = options.now ?? Date.now;
  const cache = new LRUCache<string, string>({ max: options.cacheSize ?? 10000 });
  const stats = { hits: 0, misses: 0, clamped: 0 };
  let lastClampReportedFor: number | undefined;

  const windowStart = () => Math.floor(now() / 1000 / windowSeconds) * windowSeconds;

  // Temporary credentials (STS, SSO, IAM roles) stop working at their expiry, and so does every
  // URL they signed; a URL must not claim a longer life than its credentials have.
  function resolveLifetime(signingSeconds: number, expiration: Date | undefined): number {
    if (!expiration) return lifetimeSeconds;

    const remaining = Math.floor(expiration.getTime() / 1000) - signingSeconds;
    if (remaining >= lifetimeSeconds) return lifetimeSeconds;

    stats.clamped += 1;
    if (lastClampReportedFor !== expiration.getTime()) {
      lastClampReportedFor = expiration.getTime();
      options.onLifetimeClamped?.({
        lifetimeSeconds: Math.max(remaining, 1),
        credentialsExpireAt: expiration,
      });
    }
    return Math.max(remaining, 1);
  }

  async function sign(request: SignRequest): Promise<string> {
    const start = windowStart();
    const method = request.method ?? 'GET';
    const o = request.overrides ?? {};
    // The SDK memoizes its credential provider, so this costs a resolved promise on the warm path.
    // The key includes the credentials so that a refresh never serves a URL signed by the old ones.
    const credentials = await options.client.config.credentials();
    const cacheKey = [
      credentials.accessKeyId,
      credentials.expiration?.getTime() ?? '',
      start,
      method,
      request.key,
      o.cacheControl ?? '',
      o.expires?.getTime() ?? '',
      o.contentDisposition ?? '',
      o.contentType ?? '',
    ].join('\n');

    const cached = cache.get(cacheKey);
    if (cached !== undefined) {
      stats.hits += 1;
      return cached;
    }
    stats.misses += 1;

    const input = {
      Bucket: options.bucket,
      Key: request.key,
      ResponseCacheControl: o.cacheControl,
      ResponseExpires: o.expires,
      ResponseContentDisposition: o.contentDisposition,
      ResponseContentType: o.contentType,
    };
    const command = method === 'HEAD' ? new HeadObjectCommand(input) : new GetObjectCommand(input);
    const url = await getSignedUrl(options.client, command, {
      signingDate: new Date(start * 1000),
      expiresIn: resolveLifetime(start, credentials.expiration),
    });
    cache.set(cacheKey, url);
    return url;
  }

  return { sign, windowStart, stats };
}
