import { createHash, createHmac } from 'node:crypto';
import type { AwsCredentialIdentity } from '@smithy/types';

/**
 * Target of presigned URLs, taken once from a URL the AWS SDK signed, so endpoint rules
 * (virtual-hosted or path style, custom endpoints, regions) stay the SDK's.
 */
export interface PresignTarget {
  /** Scheme and authority, such as https://bucket.s3.eu-west-1.amazonaws.com. */
  origin: string;
  /** Host header value as signed: host, plus the port when it is not the scheme's default. */
  host: string;
  /** Encoded path before the key: "/" (virtual-hosted) or "/bucket/" (path style). */
  pathPrefix: string;
  region: string;
  service: string;
}

export interface PresignInput {
  method: 'GET' | 'HEAD';
  key: string;
  /** Extra query parameters, such as x-id and response-cache-control. */
  query: Record<string, string>;
  credentials: AwsCredentialIdentity;
  signingDate: Date;
  expiresInSeconds: number;
}

const PROBE_KEY = 's3gate-probe-object';

/** RFC 3986 encoding as SigV4 requires it: encodeURIComponent plus the five characters it keeps. */
function escapeUri(value: string): string {
  // Most names and values are plain already; skip the encoder for them.
  if (!NEEDS_ESCAPE.test(value)) return value;
  const encoded = encodeURIComponent(value);
  if (!KEPT_BY_ENCODER.test(encoded)) return encoded;
  return encoded.replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
const NEEDS_ESCAPE = /[^A-Za-z0-9\-._~]/;
const KEPT_BY_ENCODER = /[!'()*]/;

/** Encode an S3 key for the URL path: every segment escaped, the slashes kept. */
function escapeKey(key: string): string {
  return key.split('/').map(escapeUri).join('/');
}

function formatAmzDate(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
}

/**
 * Read the presign target from a URL the SDK signed for the probe key.
 * Throws when the URL does not have the expected shape, so the caller can keep using the SDK.
 */
export function targetFromSdkUrl(sdkUrl: string): PresignTarget {
  const url = new URL(sdkUrl);
  const suffix = `/${PROBE_KEY}`;
  if (!url.pathname.endsWith(suffix))
    throw new Error(`unexpected presigned URL path: ${url.pathname}`);
  const scope = (url.searchParams.get('X-Amz-Credential') ?? '').split('/');
  if (scope.length !== 5 || scope[4] !== 'aws4_request')
    throw new Error('unexpected X-Amz-Credential scope');
  return {
    origin: url.origin,
    host: url.host,
    pathPrefix: url.pathname.slice(0, -PROBE_KEY.length),
    region: scope[2] ?? '',
    service: scope[3] ?? '',
  };
}

export { PROBE_KEY };

/**
 * SigV4 query presigning for S3 GET and HEAD with `host` as the only signed header, on
 * node:crypto. The SDK's getSignedUrl runs its whole middleware stack per URL; this does the
 * canonical request, one SHA-256 and one HMAC with a cached signing key. The URLs are meant to be
 * byte-identical to the SDK's, which the URL signer checks at start and a test checks over many
 * keys.
 */
export class QueryPresigner {
  private readonly signingKeys = new Map<string, Buffer>();

  constructor(readonly target: PresignTarget) {}

  presign(input: PresignInput): string {
    const { target } = this;
    const amzDate = formatAmzDate(input.signingDate);
    const shortDate = amzDate.slice(0, 8);
    const scope = `${shortDate}/${target.region}/${target.service}/aws4_request`;

    const params: Record<string, string> = {
      ...input.query,
      'X-Amz-Algorithm': 'AWS4-HMAC-SHA256',
      'X-Amz-Content-Sha256': 'UNSIGNED-PAYLOAD',
      'X-Amz-Credential': `${input.credentials.accessKeyId}/${scope}`,
      'X-Amz-Date': amzDate,
      'X-Amz-Expires': String(input.expiresInSeconds),
      'X-Amz-SignedHeaders': 'host',
    };
    if (input.credentials.sessionToken)
      params['X-Amz-Security-Token'] = input.credentials.sessionToken;

    // Canonical request: the query sorted by key code point, without the signature.
    const names = Object.keys(params).sort();
    const pairs = names.map((name) => `${escapeUri(name)}=${escapeUri(params[name] ?? '')}`);
    const canonicalQuery = pairs.join('&');
    const path = target.pathPrefix + escapeKey(input.key);
    const canonicalRequest = `${input.method}\n${path}\n${canonicalQuery}\nhost:${target.host}\n\nhost\nUNSIGNED-PAYLOAD`;

    // String to sign, then the signature with the day's signing key.
    const hash = createHash('sha256').update(canonicalRequest).digest('hex');
    const stringToSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${hash}`;
    const signature = createHmac(
      'sha256',
      this.signingKey(input.credentials.secretAccessKey, shortDate),
    )
      .update(stringToSign)
      .digest('hex');

    // The SDK writes the final query sorted by name too, with the signature in its place.
    let at = 0;
    while (at < names.length && (names[at] ?? '') < 'X-Amz-Signature') at += 1;
    pairs.splice(at, 0, `X-Amz-Signature=${signature}`);
    return `${target.origin}${path}?${pairs.join('&')}`;
  }

  /** HMAC chain secret → date → region → service → "aws4_request", cached per secret and day. */
  private signingKey(secret: string, shortDate: string): Buffer {
    const cacheKey = `${shortDate}\n${secret}`;
    let key = this.signingKeys.get(cacheKey);
    if (key) return key;

    const dateKey = createHmac('sha256', `AWS4${secret}`).update(shortDate).digest();
    const regionKey = createHmac('sha256', dateKey).update(this.target.region).digest();
    const serviceKey = createHmac('sha256', regionKey).update(this.target.service).digest();
    key = createHmac('sha256', serviceKey).update('aws4_request').digest();
    // Keys change daily; keeping a handful covers credential rotation without growing forever.
    if (this.signingKeys.size >= 8) this.signingKeys.clear();
    this.signingKeys.set(cacheKey, key);
    return key;
  }
}
