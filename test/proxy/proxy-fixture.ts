import fs from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import express, { type ErrorRequestHandler, type Express } from 'express';
import type { Response, Test } from 'supertest';
import { isHttpError } from '../../src/errors';
import { newImageId } from '../../src/images/image-id';
import { createImageRouter } from '../../src/images/image-router';
import type { ImageRecord } from '../../src/images/image-repository';
import { createProxyDelivery, type ProxyLogger } from '../../src/images/proxy-delivery';
import {
  EMBEDDED_S3_CREDENTIALS,
  startEmbeddedS3,
  type EmbeddedS3,
} from '../../src/storage/embedded-s3';
import { createS3Client } from '../../src/storage/s3-client';

export const BUCKET = 'images';
export const CACHE_MAX_AGE_SECONDS = 31_536_000;
export const CACHE_CONTROL = `private, max-age=${CACHE_MAX_AGE_SECONDS}, immutable`;

/** Settings shared by every test client, as the app would pass them to createS3Client. */
export const TEST_CLIENT_SETTINGS = {
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: EMBEDDED_S3_CREDENTIALS,
} as const;

export interface ImageStore {
  images: Map<string, ImageRecord>;
  /**
   * Put the bytes into the bucket and add a metadata row. `row` overrides fields of that row, and
   * its `key` is also the key the bytes are put under.
   */
  storeImage(bytes: Buffer, row?: Partial<ImageRecord>): Promise<ImageRecord>;
}

/**
 * Create a bare Express app with the image router in proxy mode: every request counts as signed
 * in, and a small error handler renders `err.status`, `err.message` and `err.headers` as the
 * app's handler does.
 */
export function createProxyApp(
  client: S3Client,
  images: Map<string, ImageRecord>,
  logger?: ProxyLogger,
): Express {
  const app = express();
  // Express would add its own ETag to the error handler's text bodies.
  app.set('etag', false);
  app.use(
    createImageRouter({
      mode: 'proxy',
      proxy: createProxyDelivery({
        client,
        bucket: BUCKET,
        cacheMaxAgeSeconds: CACHE_MAX_AGE_SECONDS,
        logger,
      }),
      findImage: (id) => Promise.resolve(images.get(id)),
      isSignedIn: () => true,
      cacheMaxAgeSeconds: CACHE_MAX_AGE_SECONDS,
    }),
  );
  app.use(renderError);
  return app;
}

const renderError: ErrorRequestHandler = (error: unknown, _req, res, _next) => {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const httpError = isHttpError(error) ? error : undefined;
  if (httpError?.headers) res.set(httpError.headers);
  res.status(httpError?.status ?? 500);
  res.type('text/plain').send(httpError?.expose ? httpError.message : 'Internal Server Error');
};

/** Create an image store over a bucket of the given client. */
export function createImageStore(client: S3Client): ImageStore {
  const images = new Map<string, ImageRecord>();
  return {
    images,
    async storeImage(bytes, row = {}) {
      const id = newImageId();
      const key = row.key ?? `images/${id}`;
      const contentType = row.contentType ?? 'image/png';
      const put = await client.send(
        new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: bytes, ContentType: contentType }),
      );
      const image: ImageRecord = {
        id,
        key,
        contentType,
        sizeBytes: bytes.length,
        etag: put.ETag ?? null,
        originalName: 'photo.png',
        width: null,
        height: null,
        uploadedBy: null,
        // A minute back, so that Last-Modified is strong and clearly before any If-Modified-Since.
        createdAt: new Date(Date.now() - 60_000),
        hasCacheMetadata: true,
        ...row,
      };
      images.set(id, image);
      return image;
    },
  };
}

export interface EmbeddedS3Fixture {
  s3: EmbeddedS3;
  client: S3Client;
  /**
   * Requests that reached the S3 server, oldest first, when the fixture was started with
   * `recordRequests`. Empty otherwise.
   */
  requests: S3Request[];
  /**
   * Faults for the next reads (GET and HEAD), used up one per read, when the fixture was started
   * with `recordRequests`. The relay replies to such a read itself and does not forward it.
   */
  readFaults: S3Fault[];
  close(): Promise<void>;
}

/** An S3 error response with its XML document, or a connection reset before any response. */
export type S3Fault = { status: number; code: string; message?: string } | 'reset';

/** One request that the recording relay passed on to the S3 server. */
export interface S3Request {
  method: string;
  /** Path without the query, such as `/images/<key>`. */
  path: string;
  headers: http.IncomingHttpHeaders;
}

/**
 * Start the embedded S3 server in a fresh temporary folder, with a client for it. With
 * `recordRequests`, the client talks to an HTTP relay on loopback that records each request and
 * passes it on unchanged, so a test can check what S3 received.
 */
export async function startEmbeddedS3Fixture(
  options: { recordRequests?: boolean } = {},
): Promise<EmbeddedS3Fixture> {
  const directory = await fs.mkdtemp(path.join(os.tmpdir(), 's3gate-proxy-'));
  const s3 = await startEmbeddedS3({ directory, bucket: BUCKET, port: 0 });
  const requests: S3Request[] = [];
  const readFaults: S3Fault[] = [];
  const relay = options.recordRequests
    ? await startRecordingRelay(s3.endpoint, requests, readFaults)
    : undefined;
  const client = createS3Client({
    ...TEST_CLIENT_SETTINGS,
    endpoint: relay?.endpoint ?? s3.endpoint,
    maxSockets: 8,
  });
  return {
    s3,
    client,
    requests,
    readFaults,
    async close() {
      client.destroy();
      await relay?.close();
      await s3.close();
      await fs.rm(directory, { recursive: true, force: true });
    },
  };
}

/**
 * Listen on loopback and forward every request to `target`, Host header included so that the
 * SigV4 signature still matches. Each request is appended to `requests`. A read meets the first
 * fault in `readFaults`, if there is one, instead of the S3 server.
 */
async function startRecordingRelay(
  target: string,
  requests: S3Request[],
  readFaults: S3Fault[],
): Promise<{ endpoint: string; close(): Promise<void> }> {
  const upstream = new URL(target);
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    requests.push({
      method: req.method ?? '',
      path: url.split('?')[0] ?? url,
      headers: req.headers,
    });

    const fault = req.method === 'GET' || req.method === 'HEAD' ? readFaults.shift() : undefined;
    if (fault === 'reset') {
      req.socket.resetAndDestroy();
      return;
    }
    if (fault) {
      // No Date header, unlike S3, so that the reader cannot learn the server's clock from it.
      res.sendDate = false;
      res.writeHead(fault.status, { 'content-type': 'application/xml' });
      const message = fault.message === undefined ? '' : `<Message>${fault.message}</Message>`;
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code}</Code>${message}</Error>`,
      );
      return;
    }

    const forwarded = http.request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: url,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forwarded.on('error', () => res.destroy());
    // A client that leaves early must not leave the upstream request open.
    res.on('close', () => forwarded.destroy());
    req.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Send a raw HEAD request and return everything after the header block, which must be empty.
 * supertest never reads a body for HEAD, so it cannot show bytes that should not be there.
 */
export async function bytesAfterHeadResponse(app: Express, path: string): Promise<Buffer> {
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const socket = net.connect(port, '127.0.0.1');
    socket.end(`HEAD ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    const chunks: Buffer[] = [];
    for await (const chunk of socket) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    return raw.subarray(raw.indexOf('\r\n\r\n') + 4);
  } finally {
    server.close();
  }
}

/** Make supertest collect any body as a Buffer in `res.body`, whatever its content type. */
export function asBytes(test: Test): Test {
  return test.buffer(true).parse((res, callback) => {
    const chunks: Buffer[] = [];
    res.on('data', (chunk: Buffer) => chunks.push(chunk));
    res.on('end', () => {
      callback(null, Buffer.concat(chunks));
    });
  });
}

/** Return the response body that `asBytes` collected. */
export function bodyOf(res: Response): Buffer {
  return res.body as Buffer;
}

/** Names of the `x-amz-*` headers in a response; proxy responses must have none. */
export function amazonHeaders(res: Response): string[] {
  return Object.keys(res.headers).filter((name) => name.toLowerCase().startsWith('x-amz-'));
}
