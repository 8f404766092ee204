import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';

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
    }),
    // The SDK's default CRC32 checksums break some S3-compatible stores and add nothing on top of
    // TLS and Content-MD5-free PUTs for our use; only send them where an operation requires one.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
  if (options.endpoint) config.endpoint = options.endpoint;
  if (options.credentials) config.credentials = options.credentials;
  return new S3Client(config);
}
