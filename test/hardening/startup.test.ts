import { execFileSync, spawn } from 'node:child_process';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { ADMIN_PASSWORD, csrfFrom, makeDataDir } from '../helpers/stack';

const ROOT = path.join(__dirname, '..', '..');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => {
        resolve(port);
      });
    });
  });
}

beforeAll(() => {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'pipe' });
});

describe('first start', () => {
  it('accepts the admin sign-in as soon as /healthz answers', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, ['dist/server.js'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        DATA_DIR: makeDataDir(),
        PORT: String(port),
        EMBEDDED_S3_PORT: '0',
        ADMIN_PASSWORD,
        LOG_LEVEL: 'warn',
      },
      stdio: 'ignore',
    });
    const url = `http://127.0.0.1:${port}`;
    try {
      // A deployment script polls the health endpoint, then signs in at once.
      let healthy = false;
      for (let attempt = 0; attempt < 300 && !healthy; attempt += 1) {
        healthy = await fetch(`${url}/healthz`).then(
          (response) => response.ok,
          () => false,
        );
        if (!healthy) await delay(50);
      }
      const page = await fetch(`${url}/login`);
      const cookie = (page.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
      const login = await fetch(`${url}/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          _csrf: csrfFrom(await page.text()),
          username: 'admin',
          password: ADMIN_PASSWORD,
        }),
      });

      expect(healthy).toBe(true);
      expect(login.status).toBe(303);
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  });
});
