import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import express from 'express';
import type * as ConfigModule from '../src/config';
import type * as ImageIdModule from '../src/images/image-id';
import type * as ImageRepositoryModule from '../src/images/image-repository';
import type * as ImageRouterModule from '../src/images/image-router';
import type * as LoggerModule from '../src/logger';
import type * as RuntimeModule from '../src/runtime';

/**
 * Load a module of the app from dist/, compiled by tsc as `npm start` runs it (the harness builds
 * it first), instead of the tsx-compiled source. Every module comes from there, so the baseline
 * routes share the app's module instances, its SQLite fast path included.
 */
async function loadBuilt<T>(modulePath: string): Promise<T> {
  const url = pathToFileURL(path.join(__dirname, '..', 'dist', modulePath)).href;
  return (await import(url)) as T;
}

/**
 * The full s3gate app plus baseline routes that exist for the benchmarks only, behind the same
 * session reader as /image/:id:
 * - GET /bench/constant: a 302 to a fixed URL (the ceiling for any redirect route);
 * - GET /bench/naive/:id: what many apps ship, a metadata lookup and getSignedUrl on every request;
 * - GET /bench/read/:id: the metadata lookup without the row cache, then the constant 302;
 * - GET /bench/sdk-proxy/:id: the metadata lookup, then GetObject through the SDK, piped to the
 *   response (the baseline of the proxy benchmark).
 * And behind express-session and passport, as the app's pages are:
 * - GET /bench/full/constant: the same constant 302, to show what the full stack costs;
 * - GET /bench/naive-gallery: the gallery page with <img> tags pointing at the naive route.
 * It prints one JSON line {"url": ...} on stdout when it listens.
 */
async function main(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const { loadConfig } = await loadBuilt<typeof ConfigModule>('config.js');
  const { isImageId } = await loadBuilt<typeof ImageIdModule>('images/image-id.js');
  const { ImageRepository } = await loadBuilt<typeof ImageRepositoryModule>(
    'images/image-repository.js',
  );
  const { REDIRECT_CACHE_CONTROL } =
    await loadBuilt<typeof ImageRouterModule>('images/image-router.js');
  const { createLogger } = await loadBuilt<typeof LoggerModule>('logger.js');
  const { startRuntime } = await loadBuilt<typeof RuntimeModule>('runtime.js');
  const config = loadConfig();
  const logger = createLogger('warn');

  const runtime = await startRuntime(config, logger, {
    extraRoutes: ({ s3Client, signingClient, database }) => {
      // The same repository as the image route's, row cache included, so that (b) differs from
      // s3gate only in how it signs. Row (d) reads the row every time, to show what the cache saves.
      const images = new ImageRepository(database.db);
      const uncachedImages = new ImageRepository(database.db, { rowCache: false });
      const noStore = (res: express.Response) => {
        res.setHeader('Cache-Control', REDIRECT_CACHE_CONTROL);
        res.setHeader('Pragma', 'no-cache');
        res.setHeader('Expires', '0');
      };
      const constant = (res: express.Response) => {
        noStore(res);
        res.setHeader('Location', 'http://127.0.0.1:1/constant.png');
        res.status(302).end();
      };

      // Behind the session reader and mounted like /image/:id, each on its own app.get, so no
      // router dispatch adds to their cost: req.user is set for a signed-in session.
      const constantRoute: express.RequestHandler = (req, res) => {
        if (!req.user) {
          res.sendStatus(401);
          return;
        }
        constant(res);
      };
      // The signed-in check and metadata lookup of routes (b) and (d): the image, or undefined
      // after a 401 or 404 has been sent.
      const signedInImage = async (
        req: express.Request,
        res: express.Response,
        repository: ImageRepositoryModule.ImageRepository,
      ) => {
        if (!req.user) {
          res.sendStatus(401);
          return undefined;
        }
        const image = isImageId(req.params.id)
          ? await repository.findById(req.params.id)
          : undefined;
        if (!image) res.sendStatus(404);
        return image;
      };
      // The constant 302 after the metadata read that the image route's row cache saves: one
      // SQLite primary-key lookup and the record built from it.
      const readRoute: express.RequestHandler = async (req, res) => {
        if (await signedInImage(req, res, uncachedImages)) constant(res);
      };
      const naiveRoute: express.RequestHandler = async (req, res) => {
        const image = await signedInImage(req, res, images);
        if (!image) return;
        const command = new GetObjectCommand({ Bucket: config.s3.bucket, Key: image.key });
        noStore(res);
        res.setHeader('Location', await getSignedUrl(signingClient, command, { expiresIn: 3600 }));
        res.status(302).end();
      };

      // What many apps ship to proxy an image: GetObject through the SDK on every request, piped
      // to the response. Proxy mode reads the same object through the same client's HTTP handler,
      // but with a memoized presigned request instead of the SDK's middleware stack.
      const sdkProxyRoute: express.RequestHandler = async (req, res) => {
        const image = await signedInImage(req, res, images);
        if (!image) return;
        const command = new GetObjectCommand({ Bucket: config.s3.bucket, Key: image.key });
        const object = await s3Client.send(command);
        res.setHeader('Content-Type', image.contentType);
        if (object.ContentLength !== undefined) {
          res.setHeader('Content-Length', object.ContentLength);
        }
        if (object.ETag !== undefined) res.setHeader('ETag', object.ETag);
        // A client that leaves mid-body rejects the pipeline. The socket is gone, so there is
        // nothing to send, and the benchmark counts its own errors.
        await pipeline(object.Body as Readable, res).catch(() => undefined);
      };

      // Behind express-session and passport, like the app's pages.
      const full = express.Router();
      full.get('/bench/full/constant', (req, res) => {
        if (!req.isAuthenticated()) {
          res.sendStatus(401);
          return;
        }
        constant(res);
      });
      full.get('/bench/naive-gallery', async (req, res) => {
        if (!req.isAuthenticated()) {
          res.sendStatus(401);
          return;
        }
        const list = await images.list();
        const tags = list
          .map(
            (i) =>
              `<img src="/bench/naive/${i.id}" width="${i.width ?? ''}" height="${i.height ?? ''}" alt="">`,
          )
          .join('\n');
        res
          .type('html')
          .send(
            `<!doctype html><title>naive</title><link rel="stylesheet" href="/assets/style.css">\n${tags}`,
          );
      });

      return {
        sessionReaderRoutes: [
          { path: '/bench/constant', handler: constantRoute },
          { path: '/bench/naive/:id', handler: naiveRoute },
          { path: '/bench/read/:id', handler: readRoute },
          { path: '/bench/sdk-proxy/:id', handler: sdkProxyRoute },
        ],
        extraRoutes: full,
      };
    },
  });

  process.stdout.write(`${JSON.stringify({ url: runtime.url, pid: process.pid })}\n`);
  const stop = () => {
    void runtime.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench server failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
