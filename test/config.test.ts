import { ConfigError, loadConfig, MAX_URL_LIFETIME_SECONDS } from '../src/config';
import { createUrlSigner } from '../src/storage/url-signer';
import { createS3Client } from '../src/storage/s3-client';

function problemsFor(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('loadConfig', () => {
  it('starts in embedded mode with no variables', () => {
    const config = loadConfig({});

    expect(config.s3.embedded).toBe(true);
    expect(config.s3.bucket).toBe('s3gate-images');
    expect(config.deliveryMode).toBe('redirect');
    expect(config.signedUrl).toEqual({
      windowSeconds: 3600,
      minValiditySeconds: 600,
      cacheSize: 10000,
    });
    expect(config.trustProxy).toBe(false);
  });

  it('treats empty values as unset', () => {
    expect(loadConfig({ PORT: '', S3_BUCKET: '' }).port).toBe(3000);
  });

  it('uses an external bucket when S3_BUCKET is set', () => {
    const config = loadConfig({ S3_BUCKET: 'photos', S3_REGION: 'eu-west-1' });

    expect(config.s3.embedded).toBe(false);
    expect(config.s3.forcePathStyle).toBe(false);
    expect(config.s3.region).toBe('eu-west-1');
  });

  it.each([
    ['false', false],
    ['true', true],
    ['1', 1],
    ['loopback', 'loopback'],
    ['10.0.0.0/8, 127.0.0.1', '10.0.0.0/8, 127.0.0.1'],
  ])('reads TRUST_PROXY=%s', (value, expected) => {
    expect(loadConfig({ TRUST_PROXY: value }).trustProxy).toEqual(expected);
  });
});

describe('C03 signed URL lifetime over 7 days', () => {
  it('fails start-up naming the variable and the SigV4 limit', () => {
    const problems = problemsFor({
      SIGNED_URL_WINDOW_SECONDS: String(8 * 24 * 3600),
      SIGNED_URL_MIN_VALIDITY_SECONDS: '0',
    });

    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('SIGNED_URL_WINDOW_SECONDS');
    expect(problems[0]).toContain('7 days');
    expect(problems[0]).toContain(String(MAX_URL_LIFETIME_SECONDS));
  });

  it('counts the minimum validity in the lifetime', () => {
    const problems = problemsFor({
      SIGNED_URL_WINDOW_SECONDS: String(MAX_URL_LIFETIME_SECONDS),
      SIGNED_URL_MIN_VALIDITY_SECONDS: '1',
    });

    expect(problems[0]).toContain('SIGNED_URL_WINDOW_SECONDS + SIGNED_URL_MIN_VALIDITY_SECONDS');
  });

  it('accepts exactly 7 days', () => {
    const config = loadConfig({
      SIGNED_URL_WINDOW_SECONDS: String(MAX_URL_LIFETIME_SECONDS - 600),
    });

    expect(config.signedUrl.windowSeconds + config.signedUrl.minValiditySeconds).toBe(
      MAX_URL_LIFETIME_SECONDS,
    );
  });

  it('makes createUrlSigner throw, for apps that skip loadConfig', () => {
    const client = createS3Client({
      region: 'us-east-1',
      credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
    });

    expect(() =>
      createUrlSigner({ client, bucket: 'b', windowSeconds: 8 * 24 * 3600, minValiditySeconds: 0 }),
    ).toThrow(/over the SigV4 limit of 604800 s/);
  });
});

describe('invalid configuration', () => {
  const cases: [string, Record<string, string>, RegExp][] = [
    ['PORT', { PORT: 'eighty' }, /^PORT \(got "eighty"\)/],
    ['PORT', { PORT: '70000' }, /^PORT \(got "70000"\)/],
    ['DELIVERY_MODE', { DELIVERY_MODE: 'stream' }, /^DELIVERY_MODE \(got "stream"\)/],
    ['SIGNED_URL_WINDOW_SECONDS', { SIGNED_URL_WINDOW_SECONDS: '0' }, /^SIGNED_URL_WINDOW_SECONDS/],
    ['IMAGE_MAX_BYTES', { IMAGE_MAX_BYTES: '-5' }, /^IMAGE_MAX_BYTES/],
    ['S3_ENDPOINT', { S3_ENDPOINT: 'not a url', S3_BUCKET: 'b-b-b' }, /^S3_ENDPOINT/],
    [
      'S3_BUCKET',
      { S3_ENDPOINT: 'http://127.0.0.1:9000' },
      /^S3_BUCKET: is required when S3_ENDPOINT is set/,
    ],
    ['S3_KEY_PREFIX', { S3_KEY_PREFIX: '../up' }, /^S3_KEY_PREFIX/],
    ['S3_KEY_PREFIX dot segment', { S3_KEY_PREFIX: 'p/./' }, /^S3_KEY_PREFIX/],
    ['S3_KEY_PREFIX dot-dot segment', { S3_KEY_PREFIX: 'a/../' }, /^S3_KEY_PREFIX/],
    ['DATABASE_URL', { DATABASE_URL: 'mysql://x' }, /^DATABASE_URL/],
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }, /^LOG_LEVEL/],
    [
      'TRUST_PROXY',
      { TRUST_PROXY: 'maybe' },
      /^TRUST_PROXY \(got "maybe"\): invalid IP address: maybe/,
    ],
    [
      'LOGIN_FAILURE_WINDOW_SECONDS',
      { LOGIN_FAILURE_WINDOW_SECONDS: '99999999999999' },
      /Node's timer limit/,
    ],
    ['S3_REQUEST_TIMEOUT_MS', { S3_REQUEST_TIMEOUT_MS: '9999999999' }, /Node's timer limit/],
    ['S3_CONNECT_TIMEOUT_MS', { S3_CONNECT_TIMEOUT_MS: '9999999999' }, /Node's timer limit/],
    ['SHUTDOWN_TIMEOUT_MS', { SHUTDOWN_TIMEOUT_MS: '9999999999' }, /Node's timer limit/],
    ['SESSION_MAX_AGE_SECONDS', { SESSION_MAX_AGE_SECONDS: '99999999999999' }, /10 years/],
    ['IMAGE_CACHE_MAX_AGE_SECONDS', { IMAGE_CACHE_MAX_AGE_SECONDS: '99999999999999' }, /10 years/],
    [
      'SESSION_SECRET',
      { DATABASE_URL: 'postgres://127.0.0.1:5432/test' },
      /^SESSION_SECRET: is required with DATABASE_URL/,
    ],
    [
      'REDIRECT_CACHE_MARGIN_SECONDS',
      { REDIRECT_CACHE: 'aligned', REDIRECT_CACHE_MARGIN_SECONDS: '4200' },
      /^REDIRECT_CACHE_MARGIN_SECONDS \(got "4200"\): must be less than the signed URL lifetime/,
    ],
  ];

  it.each(cases)('reports %s', (_name, env, pattern) => {
    const problems = problemsFor(env);

    expect(problems.some((p) => pattern.test(p))).toBe(true);
  });

  it('reports every problem at once', () => {
    const problems = problemsFor({ PORT: 'x', DELIVERY_MODE: 'y', IMAGE_MAX_BYTES: 'z' });

    expect(problems).toHaveLength(3);
  });

  it('never prints a secret value', () => {
    const problems = problemsFor({ SESSION_SECRET: 'short-secret', ADMIN_PASSWORD: 'pw' });

    expect(problems.join('\n')).not.toContain('short-secret');
    expect(problems.join('\n')).not.toContain('"pw"');
    expect(problems).toHaveLength(2);
  });
});

describe('SESSION_SECRET with DATABASE_URL', () => {
  const databaseUrl = 'postgres://127.0.0.1:5432/test';

  it('is listed with the other invalid values', () => {
    const problems = problemsFor({ DATABASE_URL: databaseUrl, DELIVERY_MODE: 'foo' });

    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^DELIVERY_MODE \(got "foo"\)/);
    expect(problems[1]).toMatch(/^SESSION_SECRET: is required with DATABASE_URL/);
    expect(problems[1]).toContain('openssl rand -hex 32');
  });

  it('is accepted when set', () => {
    const secret = 'x'.repeat(32);
    const config = loadConfig({ DATABASE_URL: databaseUrl, SESSION_SECRET: secret });

    expect(config.session.secret).toBe(secret);
  });

  it('is optional without DATABASE_URL', () => {
    expect(loadConfig({}).session.secret).toBeUndefined();
    expect(loadConfig({ S3_BUCKET: 'photos' }).session.secret).toBeUndefined();
  });

  it('is reported once when too short', () => {
    const problems = problemsFor({ DATABASE_URL: databaseUrl, SESSION_SECRET: 'short-secret' });

    expect(problems).toEqual(['SESSION_SECRET: must be at least 32 characters']);
  });
});

describe('REDIRECT_CACHE_MARGIN_SECONDS with REDIRECT_CACHE=aligned', () => {
  it('rejects a margin of the whole URL lifetime, with the numbers', () => {
    const problems = problemsFor({
      REDIRECT_CACHE: 'aligned',
      REDIRECT_CACHE_MARGIN_SECONDS: '4200',
    });

    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('lifetime of 4200 s');
    expect(problems[0]).toContain('SIGNED_URL_WINDOW_SECONDS 3600');
    expect(problems[0]).toContain('SIGNED_URL_MIN_VALIDITY_SECONDS 600');
    expect(problems[0]).toContain('set REDIRECT_CACHE_MARGIN_SECONDS to 600 or less');
  });

  it.each([
    ['60', '0', '60'],
    ['60', '0', '3600'],
    ['600', '30', '631'],
  ])('rejects window %s s, minimum validity %s s, margin %s s', (window, minValidity, margin) => {
    const problems = problemsFor({
      REDIRECT_CACHE: 'aligned',
      SIGNED_URL_WINDOW_SECONDS: window,
      SIGNED_URL_MIN_VALIDITY_SECONDS: minValidity,
      REDIRECT_CACHE_MARGIN_SECONDS: margin,
    });

    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^REDIRECT_CACHE_MARGIN_SECONDS/);
  });

  it('is listed with the other invalid values', () => {
    const problems = problemsFor({
      DELIVERY_MODE: 'foo',
      REDIRECT_CACHE: 'aligned',
      REDIRECT_CACHE_MARGIN_SECONDS: '5000',
    });

    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^DELIVERY_MODE/);
    expect(problems[1]).toMatch(/^REDIRECT_CACHE_MARGIN_SECONDS \(got "5000"\)/);
  });

  it('accepts a margin one second under the lifetime', () => {
    const config = loadConfig({ REDIRECT_CACHE: 'aligned', REDIRECT_CACHE_MARGIN_SECONDS: '4199' });

    expect(config.redirectCache).toEqual({ mode: 'aligned', marginSeconds: 4199 });
  });

  it('accepts any margin with REDIRECT_CACHE=none', () => {
    const config = loadConfig({ REDIRECT_CACHE: 'none', REDIRECT_CACHE_MARGIN_SECONDS: '4200' });

    expect(config.redirectCache.marginSeconds).toBe(4200);
  });
});
