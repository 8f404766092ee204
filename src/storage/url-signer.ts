import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { LRUCache } from 'lru-cache';
import type { AwsCredentialIdentity } from '@smithy/types';
import { MAX_URL_LIFETIME_SECONDS } from '../config';
import { checkFunction, checkInteger, checkNonEmptyString, checkS3Client } from '../option-checks';
import { PROBE_KEY, QueryPresigner, targetFromSdkUrl } from './query-presigner';

/** Response headers that S3 sets from `response-*` query parameters of a signed URL. */
export interface ResponseOverrides {
  /** `Cache-Control` of the response, such as `private, max-age=31536000, immutable`. */
  cacheControl?: string;
  /** Absolute expiry for the `Expires` header. */
  expires?: Date;
  /** `Content-Disposition`, such as `attachment; filename="photo.png"`. */
  contentDisposition?: string;
  /** `Content-Type`, replacing the one stored with the object. */
  contentType?: string;
}

/** One URL to sign. */
export interface SignRequest {
  /** S3 key of the object. */
  key: string;
  /** S3 checks the method in the signature, so a HEAD needs a URL signed for HeadObject. Default GET. */
  method?: 'GET' | 'HEAD';
  /** Response headers that S3 sets from the URL's `response-*` parameters. Default none. */
  overrides?: ResponseOverrides;
  /**
   * Make the object fresh in the browser exactly until the URL expires: `response-cache-control:
   * private` and `response-expires` at the URL's expiry, replacing any cache overrides above.
   */
  cacheUntilExpiry?: boolean;
}

/** Options of `createUrlSigner`. */
export interface UrlSignerOptions {
  /**
   * Client whose credentials sign the URLs. Its endpoint must be the one browsers reach, because
   * the host is part of the signature. Create it with `createS3Client`, which turns off the SDK's
   * default checksum parameters that some S3-compatible stores reject in a URL.
   */
  client: S3Client;
  /** Bucket that contains the objects. */
  bucket: string;
  /**
   * Length of the signing window in seconds: every request within one window gets the same URL,
   * so the browser cache keyed by that URL works for the whole window. s3gate uses 3600.
   */
  windowSeconds: number;
  /**
   * Validity in seconds that a URL keeps at least, even when handed out at the very end of its
   * window. Each URL lives `windowSeconds + minValiditySeconds` from the window start, which must
   * not exceed 604800 (7 days, the SigV4 limit). s3gate uses 600.
   */
  minValiditySeconds: number;
  /** Maximum number of memoized URLs, least recently used evicted first. Default 10,000. */
  cacheSize?: number;
  /** Clock in milliseconds since the epoch. Default `Date.now`; tests move it. */
  now?: () => number;
  /**
   * Called when a URL's lifetime is shortened to the expiry of temporary credentials (STS, SSO,
   * IAM roles), once per credential expiry. Default: ignore.
   */
  onLifetimeClamped?: (info: { lifetimeSeconds: number; credentialsExpireAt: Date }) => void;
  /**
   * Called when the built-in presigner's URL for a probe differs from the SDK's, so every URL is
   * signed by the SDK instead. Default: ignore.
   */
  onFastPathDisabled?: (reason: string) => void;
  /**
   * Sign with the built-in SigV4 presigner, which skips the SDK's middleware stack for each URL,
   * after checking that it produces the same URLs as the SDK. Default true; false always uses the SDK.
   */
  fastPath?: boolean;
}

/** A signer made by `createUrlSigner`. */
export interface UrlSigner {
  /** Sign a URL for the current window, or return the memoized one. */
  sign(request: SignRequest): Promise<string>;
  /** Start of the current signing window, in seconds since the epoch. */
  windowStart(): number;
  /**
   * Running totals since creation: memo cache hits and misses, and URLs whose lifetime was
   * shortened to the expiry of temporary credentials.
   */
  readonly stats: { hits: number; misses: number; clamped: number };
  /** Whether URLs come from the built-in presigner (true) or the SDK (false); resolves after the first sign. */
  usesFastPath(): Promise<boolean>;
}

const CREDENTIAL_REFRESH_MARGIN_MS = 5 * 60 * 1000;

/** Expiry of a SigV4 presigned URL in milliseconds since the epoch, from X-Amz-Date and X-Amz-Expires. */
export function presignedUrlExpiry(url: string): number {
  const query = url.slice(url.indexOf('?') + 1);
  const date = /(?:^|&)X-Amz-Date=(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(query);
  const expires = /(?:^|&)X-Amz-Expires=(\d+)/.exec(query);
  if (!date || !expires) return 0;
  const [, y, mo, d, h, mi, se] = date.map(Number);
  return Date.UTC(y ?? 0, (mo ?? 1) - 1, d, h, mi, se) + Number(expires[1]) * 1000;
}

const FACTORY = 'createUrlSigner';

function checkOptions(options: UrlSignerOptions): void {
  checkS3Client(FACTORY, 'client', options.client);
  checkNonEmptyString(FACTORY, 'bucket', options.bucket, 'Pass the name of the image bucket.');
  checkInteger(FACTORY, 'windowSeconds', options.windowSeconds, {
    hint: 'Use the signing window in seconds, such as 3600.',
  });
  checkInteger(FACTORY, 'minValiditySeconds', options.minValiditySeconds, {
    min: 0,
    hint: 'Use the validity in seconds that a URL keeps at least, such as 600.',
  });
  if (options.cacheSize !== undefined) checkInteger(FACTORY, 'cacheSize', options.cacheSize);
  checkFunction(FACTORY, 'now', options.now, { optional: true });
  checkFunction(FACTORY, 'onLifetimeClamped', options.onLifetimeClamped, { optional: true });
  checkFunction(FACTORY, 'onFastPathDisabled', options.onFastPathDisabled, { optional: true });
}

/**
 * Create a signer that returns byte-identical presigned URLs for the whole of a time window.
 *
 * A browser caches an image under its full URL, signature included, so a fresh signature on
 * every page view would make every view a cache miss. Rounding the signing time down to the
 * window start makes the URL a pure function of (credentials, bucket, key, method, overrides,
 * window), which is also true across app instances that share credentials and settings.
 *
 * @throws TypeError for a missing or invalid option, and RangeError when
 *   `windowSeconds + minValiditySeconds` exceeds 604800 seconds.
 *
 * @example
 * ```ts
 * const signer = createUrlSigner({
 *   client: createS3Client({ region: 'eu-west-1' }),
 *   bucket: 'my-private-images',
 *   windowSeconds: 3600,
 *   minValiditySeconds: 600,
 * });
 * const url = await signer.sign({ key: 'images/abc.png' });
 * ```
 */
export function createUrlSigner(options: UrlSignerOptions): UrlSigner {
  checkOptions(options);
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

  let fastPresigner: Promise<QueryPresigner | undefined> | undefined;
  let knownCredentials: AwsCredentialIdentity | undefined;
  // The resolved fastPresigner, so cache misses after the first skip awaiting it.
  let readyPresigner: QueryPresigner | undefined;

  // Reuse resolved credentials while they have more than five minutes left, the same margin the
  // SDK's own provider uses before it refreshes. Skipping the provider's promise keeps a memoized
  // lookup under a microsecond.
  function currentCredentials(): AwsCredentialIdentity | Promise<AwsCredentialIdentity> {
    const known = knownCredentials;
    if (
      known &&
      (!known.expiration || known.expiration.getTime() - now() > CREDENTIAL_REFRESH_MARGIN_MS)
    ) {
      return known;
    }
    return options.client.config.credentials().then((credentials) => {
      knownCredentials = credentials;
      return credentials;
    });
  }

  const windowStart = () => Math.floor(now() / 1000 / windowSeconds) * windowSeconds;

  // Temporary credentials (STS, SSO, IAM roles) stop working at their expiry, and so does every
  // URL they signed, so a URL must not claim a longer life than its credentials have.
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

  function toInput(key: string, method: 'GET' | 'HEAD', o: ResponseOverrides) {
    const input = {
      Bucket: options.bucket,
      Key: key,
      ResponseCacheControl: o.cacheControl,
      ResponseExpires: o.expires,
      ResponseContentDisposition: o.contentDisposition,
      ResponseContentType: o.contentType,
    };
    return method === 'HEAD' ? new HeadObjectCommand(input) : new GetObjectCommand(input);
  }

  function sdkSign(
    key: string,
    method: 'GET' | 'HEAD',
    o: ResponseOverrides,
    signingDate: Date,
    expiresIn: number,
  ) {
    return getSignedUrl(options.client, toInput(key, method, o), { signingDate, expiresIn });
  }

  function fastSign(
    presigner: QueryPresigner,
    key: string,
    method: 'GET' | 'HEAD',
    o: ResponseOverrides,
    credentials: AwsCredentialIdentity,
    signingDate: Date,
    expiresInSeconds: number,
  ): string {
    // The same query parameters, with the same names and value formats, as the SDK's serializer.
    // The SDK adds x-id=GetObject to GetObject URLs (GET shares its path with other operations);
    // HeadObject URLs have none.
    const query: Record<string, string> = method === 'GET' ? { 'x-id': 'GetObject' } : {};
    if (o.cacheControl !== undefined) query['response-cache-control'] = o.cacheControl;
    if (o.contentDisposition !== undefined)
      query['response-content-disposition'] = o.contentDisposition;
    if (o.contentType !== undefined) query['response-content-type'] = o.contentType;
    if (o.expires !== undefined) query['response-expires'] = o.expires.toUTCString();
    return presigner.presign({ method, key, query, credentials, signingDate, expiresInSeconds });
  }

  /**
   * Build the fast presigner from an SDK-signed probe URL, then check that both sign a set of
   * awkward keys and overrides to the same bytes. Any difference keeps the SDK for every URL.
   */
  async function createFastPresigner(
    credentials: AwsCredentialIdentity,
  ): Promise<QueryPresigner | undefined> {
    if (options.fastPath === false) return undefined;
    const signingDate = new Date(windowStart() * 1000);
    try {
      const presigner = new QueryPresigner(
        targetFromSdkUrl(await sdkSign(PROBE_KEY, 'GET', {}, signingDate, 60)),
      );
      const probes: [string, 'GET' | 'HEAD', ResponseOverrides][] = [
        ["images/a b+c=d%e:f!*()'~ü写.png", 'GET', {}],
        ['x/y', 'HEAD', {}],
        [
          'images/p.png',
          'GET',
          {
            cacheControl: 'private, max-age=60, immutable',
            expires: signingDate,
            contentDisposition: 'attachment; filename="a b.png"; filename*=UTF-8\'\'%E5%86%99',
            contentType: 'image/png',
          },
        ],
      ];
      for (const [key, method, o] of probes) {
        const expected = await sdkSign(key, method, o, signingDate, 300);
        const actual = fastSign(presigner, key, method, o, credentials, signingDate, 300);
        if (actual !== expected) {
          options.onFastPathDisabled?.(`signed URLs differ for key "${key}"`);
          return undefined;
        }
      }
      return presigner;
    } catch (error) {
      options.onFastPathDisabled?.(error instanceof Error ? error.message : String(error));
      return undefined;
    }
  }

  async function sign(request: SignRequest): Promise<string> {
    const start = windowStart();
    const method = request.method ?? 'GET';
    const cacheUntilExpiry = request.cacheUntilExpiry === true;
    let o = request.overrides ?? {};
    // The key includes the credentials so that a refresh never serves a URL signed by the old ones.
    const current = currentCredentials();
    const credentials = 'then' in current ? await current : current;
    // A template literal is the cheapest way to build this key; the warm path is only this and a lookup.
    const cacheKey = `${credentials.accessKeyId}\n${credentials.expiration?.getTime() ?? ''}\n${start}\n${method}\n${cacheUntilExpiry}\n${request.key}\n${o.cacheControl ?? ''}\n${o.expires?.getTime() ?? ''}\n${o.contentDisposition ?? ''}\n${o.contentType ?? ''}`;

    const cached = cache.get(cacheKey);
    if (cached !== undefined) {
      stats.hits += 1;
      return cached;
    }
    stats.misses += 1;

    fastPresigner ??= createFastPresigner(credentials);
    const presigner = readyPresigner ?? (await fastPresigner);
    readyPresigner = presigner;
    const signingDate = new Date(start * 1000);
    const expiresIn = resolveLifetime(start, credentials.expiration);
    if (cacheUntilExpiry) {
      o = { ...o, cacheControl: 'private', expires: new Date((start + expiresIn) * 1000) };
    }
    const url = presigner
      ? fastSign(presigner, request.key, method, o, credentials, signingDate, expiresIn)
      : await sdkSign(request.key, method, o, signingDate, expiresIn);
    cache.set(cacheKey, url);
    return url;
  }

  /** Whether URLs come from the built-in presigner (true) or the SDK (false); resolves after the first sign. */
  const usesFastPath = async () =>
    (await (fastPresigner ?? Promise.resolve(undefined))) !== undefined;

  return { sign, windowStart, stats, usesFastPath };
}
