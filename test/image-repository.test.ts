import { execFileSync, spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import request from 'supertest';
import { openDatabase, type DatabaseHandle } from '../src/db/database';
import { newImageId } from '../src/images/image-id';
import { ImageRepository, type NewImage } from '../src/images/image-repository';
import { ImageRowCache } from '../src/images/image-row-cache';
import { EMBEDDED_S3_CREDENTIALS, startEmbeddedS3 } from '../src/storage/embedded-s3';
import {
  ADMIN_PASSWORD,
  deleteImage,
  loggedInAgent,
  makeDataDir,
  removeDataDirs,
  startTestStack,
  uploadFixture,
} from './helpers/stack';

afterAll(() => {
  removeDataDirs();
});

function newImage(): NewImage {
  const id = newImageId();
  return {
    id,
    key: `images/${id}.png`,
    contentType: 'image/png',
    sizeBytes: 100,
    etag: null,
    originalName: 'cached.png',
    width: 1,
    height: 1,
    uploadedBy: null,
    hasCacheMetadata: true,
  };
}

describe('ImageRepository on SQLite', () => {
  // Two handles on one file are two connections, as two workers of WEB_CONCURRENCY have.
  let first: DatabaseHandle;
  let second: DatabaseHandle;

  beforeAll(async () => {
    const file = path.join(makeDataDir(), 's3gate.sqlite');
    first = await openDatabase({ sqlitePath: file });
    second = await openDatabase({ sqlitePath: file });
  });

  afterAll(async () => {
    await second.close();
    await first.close();
  });

  it('serves a repeated lookup from its cache', async () => {
    const images = new ImageRepository(first.db);
    const image = newImage();
    await images.insert(image);

    const looked = await images.findById(image.id);
    const again = await images.findById(image.id);

    expect(looked).toMatchObject({ id: image.id, key: image.key });
    expect(again).toBe(looked);
  });

  it('reads every lookup with rowCache false', async () => {
    const images = new ImageRepository(first.db, { rowCache: false });
    const image = newImage();
    await images.insert(image);

    const looked = await images.findById(image.id);
    const again = await images.findById(image.id);

    expect(again).toEqual(looked);
    expect(again).not.toBe(looked);
  });

  it('misses a row deleted by another connection', async () => {
    const reader = new ImageRepository(first.db);
    const otherConnection = new ImageRepository(second.db);
    const image = newImage();
    await otherConnection.insert(image);
    expect(await reader.findById(image.id)).toBeDefined();

    expect(await otherConnection.delete(image.id)).toBe(true);

    expect(await reader.findById(image.id)).toBeUndefined();
  });

  it('misses a row deleted through another repository on this connection', async () => {
    const reader = new ImageRepository(first.db);
    const writer = new ImageRepository(first.db);
    const image = newImage();
    await writer.insert(image);
    expect(await reader.findById(image.id)).toBeDefined();

    await writer.delete(image.id);

    expect(await reader.findById(image.id)).toBeUndefined();
  });

  it('finds a row inserted after a miss for its id', async () => {
    const images = new ImageRepository(first.db);
    const image = newImage();
    expect(await images.findById(image.id)).toBeUndefined();

    await new ImageRepository(second.db).insert(image);

    expect(await images.findById(image.id)).toMatchObject({ id: image.id });
  });

  it('does not keep a row read while a delete runs', async () => {
    const images = new ImageRepository(first.db);
    const image = newImage();
    await images.insert(image);

    const deleting = images.delete(image.id);
    await images.findById(image.id);
    await deleting;

    expect(await images.findById(image.id)).toBeUndefined();
  });
});

describe('ImageRowCache', () => {
  // A counter replaces PRAGMA data_version, so each test sets exactly when another
  // connection "commits". The repository tests above use the real pragma.
  let dataVersion: number;
  let cache: ImageRowCache;
  const record = { ...newImage(), createdAt: new Date(0) };

  beforeEach(() => {
    dataVersion = 1;
    cache = new ImageRowCache(() => dataVersion);
  });

  function store(): void {
    const miss = cache.get(record.id);
    if (!('token' in miss)) throw new Error('expected a miss');
    cache.store(miss.token, record);
  }

  it('returns a stored row', () => {
    store();

    expect(cache.get(record.id)).toEqual({ record });
  });

  it('empties itself when the data version changes', () => {
    store();
    dataVersion += 1;

    expect(cache.get(record.id)).toHaveProperty('token');
  });

  it('drops a row read before the data version changed', () => {
    const miss = cache.get(record.id) as { token: number };
    dataVersion += 1;
    cache.get('another-id');
    cache.store(miss.token, record);

    expect(cache.get(record.id)).toHaveProperty('token');
  });

  it('forgets a row stored while a write runs', async () => {
    let finishWrite = () => {};
    const writing = cache.write(() => new Promise<void>((resolve) => (finishWrite = resolve)));
    const miss = cache.get(record.id) as { token: number };
    cache.store(miss.token, record);
    finishWrite();
    await writing;

    expect(cache.get(record.id)).toHaveProperty('token');
  });

  it('drops a row read before a write on this connection', async () => {
    const miss = cache.get(record.id) as { token: number };
    await cache.write(() => Promise.resolve());
    cache.store(miss.token, record);

    expect(cache.get(record.id)).toHaveProperty('token');
  });

  it('empties itself after a failed write', async () => {
    store();
    await expect(cache.write(() => Promise.reject(new Error('disk full')))).rejects.toThrow(
      'disk full',
    );

    expect(cache.get(record.id)).toHaveProperty('token');
  });
});

describe('two app instances on one SQLite file', () => {
  it('answer 404 on B right after a delete on A', async () => {
    const dataDir = makeDataDir();
    const a = await startTestStack({ DATA_DIR: dataDir });
    // B shares A's data directory, so its SQLite file and session secret, and reaches A's S3
    // server as an external store, as a second worker of WEB_CONCURRENCY would.
    const b = await startTestStack(
      {
        DATA_DIR: dataDir,
        S3_BUCKET: 's3gate-images',
        S3_ENDPOINT: a.runtime.embeddedS3?.endpoint ?? '',
      },
      { s3Credentials: EMBEDDED_S3_CREDENTIALS },
    );
    try {
      const agentA = await loggedInAgent(a.url);
      const { id } = await uploadFixture(agentA);
      const cookie = (await agentA.get('/').redirects(0)).request.cookies;
      const fromB = () => request(b.url).get(`/image/${id}`).set('Cookie', cookie).redirects(0);
      // Twice, so that B serves the row from its cache before the delete.
      expect((await fromB()).status).toBe(302);
      expect((await fromB()).status).toBe(302);

      expect((await deleteImage(agentA, id)).status).toBe(303);

      expect((await fromB()).status).toBe(404);
    } finally {
      await b.stop();
      await a.stop();
    }
  });
});

/** GET on a new TCP connection, so that the cluster primary hands it to the next worker. */
function statusOnNewConnection(url: string, cookie: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false, headers: { cookie } }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      })
      .on('error', reject);
  });
}

describe('WEB_CONCURRENCY on SQLite', () => {
  it('answers 404 from every worker after a delete', async () => {
    const root = path.join(__dirname, '..');
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'pipe' });
    const s3 = await startEmbeddedS3({
      directory: makeDataDir(),
      bucket: 's3gate-images',
      port: 0,
    });
    const child = spawn(process.execPath, ['dist/server.js'], {
      cwd: root,
      env: {
        ...process.env,
        WEB_CONCURRENCY: '2',
        PORT: '0',
        DATA_DIR: makeDataDir(),
        S3_BUCKET: 's3gate-images',
        S3_ENDPOINT: s3.endpoint,
        AWS_ACCESS_KEY_ID: EMBEDDED_S3_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: EMBEDDED_S3_CREDENTIALS.secretAccessKey,
        ADMIN_PASSWORD,
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));

    try {
      for (let i = 0; i < 100 && (output.match(/s3gate is listening/g) ?? []).length < 2; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect((output.match(/s3gate is listening/g) ?? []).length).toBe(2);
      // With port 0, the primary gives both workers the same port.
      const url = /"url":"(http:[^"]+)"/.exec(output)?.[1] ?? '';

      const agent = await loggedInAgent(url);
      const { id } = await uploadFixture(agent);
      const cookie = (await agent.get('/').redirects(0)).request.cookies;
      // On Linux the primary hands new connections to the workers in turn, so four requests on
      // new connections reach both workers, and each caches the row.
      const imageUrl = `${url}/image/${id}`;
      const before = [];
      for (let i = 0; i < 4; i += 1) before.push(await statusOnNewConnection(imageUrl, cookie));
      expect(before).toEqual([302, 302, 302, 302]);

      expect((await deleteImage(agent, id)).status).toBe(303);

      const after = [];
      for (let i = 0; i < 4; i += 1) after.push(await statusOnNewConnection(imageUrl, cookie));
      expect(after).toEqual([404, 404, 404, 404]);
    } finally {
      child.kill('SIGTERM');
      await exited;
      await s3.close();
    }
  });
});
