import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { StandardRetryStrategy } from '@smithy/core/retry';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type {
  AwsCredentialIdentity,
  AwsCredentialIdentityProvider,
  RetryErrorInfo,
  StandardRetryToken,
} from '@smithy/types';

export interface S3ClientOptions {
  region: string;
  /** Custom endpoint (MinIO, R2, the embedded server); undefined means AWS. */
  endpoint?: string | undefined;
  forcePathStyle?: boolean;
  /** Explicit credentials; undefined uses the SDK's default provider chain (env, profile, IAM role). */
  credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider | undefined;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Size of the keep-alive socket pool to S3. */
  maxSockets?: number;
}

/** Attempts per S3 call, as in the SDK's default retry mode. */
const MAX_ATTEMPTS = 3;

/**
 * The SDK's standard retries (jittered backoff and a retry quota), except after a timeout. A call
 * that waited the whole request or connection timeout is not sent again: with three attempts, a
 * hung S3 would keep the client waiting three times the configured timeout, and keep a pooled
 * socket busy all that time. Resets of kept-alive sockets are still retried.
 */
class RetryExceptTimeouts extends StandardRetryStrategy {
  override async refreshRetryTokenForRetry(
    token: StandardRetryToken,
    errorInfo: RetryErrorInfo,
  ): Promise<StandardRetryToken> {
    // The retry middleware reports its own last error whatever this rejects with.
    if (isTimeout(errorInfo.error)) throw new Error('S3 call timed out; not retried');
    return super.refreshRetryTokenForRetry(token, errorInfo);
  }
}

/**
 * @smithy/node-http-handler 4.14 names request and connection timeouts TimeoutError, and also
 * renames ECONNRESET and EPIPE errors to TimeoutError. Those two are stale kept-alive sockets,
 * which a retry on a fresh socket fixes.
 */
function isTimeout(error: unknown): boolean {
  if (!(error instanceof Error) || error.name !== 'TimeoutError') return false;
  const code = (error as NodeJS.ErrnoException).code;
  return code !== 'ECONNRESET' && code !== 'EPIPE';
}

/**
 * Create the S3 client used for uploads, reads and deletes, with bounded timeouts and socket pool.
 */
export function createS3Client(options: S3ClientOptions): S3Client {
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 50 };
  const config: S3ClientConfig = {
    region: options.region,
    forcePathStyle: options.forcePathStyle ?? false,
    requestHandler: new NodeHttpHandler({
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
      connectionTimeout: options.connectTimeoutMs ?? 3000,
      requestTimeout: options.requestTimeoutMs ?? 30000,
      // Without this, @smithy/node-http-handler 4.x only logs a warning at the request timeout,
      // and a silent S3 server would hold the request (and a pooled socket) forever.
      throwOnRequestTimeout: true,
      // requestTimeout ends when the response headers arrive. The socket timeout also fails a body
      // that stalls that long, such as S3 going silent mid-image, so its socket returns to the pool.
      socketTimeout: options.requestTimeoutMs ?? 30000,
    }),
    // The SDK's default CRC32 checksums break some S3-compatible stores, and they add nothing on
    // top of TLS for our uses. Send them only where an operation requires one.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    retryStrategy: new RetryExceptTimeouts(MAX_ATTEMPTS),
  };
  if (options.endpoint) config.endpoint = options.endpoint;
  if (options.credentials) config.credentials = options.credentials;
  return new S3Client(config);
}
