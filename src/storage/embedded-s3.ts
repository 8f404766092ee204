import fs from 'node:fs/promises';
import net from 'node:net';
import S3rver from '@20minutes/s3rver';

/** Fixed credentials that the embedded server accepts; they protect nothing beyond loopback. */
export const EMBEDDED_S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface EmbeddedS3Options {
  /** Folder for the stored objects; created if missing and kept across restarts. */
  directory: string;
  bucket: string;
  /** 0 picks a free port. */
  port: number;
  host?: string;
}

export interface EmbeddedS3 {
  /** Origin such as http://127.0.0.1:4569, for S3 clients and browsers on this machine. */
  endpoint: string;
  port: number;
  /** Stop the server; calling it again returns the same promise. */
  close(): Promise<void>;
}

/**
 * Start the S3-compatible server for embedded mode, with the bucket already created.
 * It checks SigV4 signatures and expiry the way AWS does, so a wrong URL fails here too.
 */
function assertPortFree(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        new Error(
          `The embedded S3 server cannot listen on ${host}:${port} (${error.code ?? error.message}). ` +
            'Set EMBEDDED_S3_PORT to a free port, or stop the process that uses this one.',
        ),
      );
    });
    probe.listen(port, host, () => {
      probe.close(() => {
        resolve();
      });
    });
  });
}

export async function startEmbeddedS3(options: EmbeddedS3Options): Promise<EmbeddedS3> {
  await fs.mkdir(options.directory, { recursive: true });
  const host = options.host ?? '127.0.0.1';
  // s3rver does not report a failed listen (it becomes an unhandled 'error' event that ends the
  // process), so check the port first and fail with a message that names the setting.
  if (options.port !== 0) await assertPortFree(host, options.port);
  const server = new S3rver({
    address: host,
    port: options.port,
    directory: options.directory,
    silent: true,
    // CreateBucket through the SDK fails the emulator's own signature check, so the bucket is made here.
    configureBuckets: [{ name: options.bucket, configs: [] }],
  });
  const address = await server.run();
  let closing: Promise<void> | undefined;
  return {
    endpoint: `http://${host}:${address.port}`,
    port: address.port,
    // A second call waits for the first instead of failing with "Server is not running".
    close: () => {
      closing ??= (async () => {
        // s3rver's close waits for keep-alive sockets; end them so shutdown is prompt.
        server.httpServer?.closeAllConnections();
        await server.close();
      })();
      return closing;
    },
  };
}
