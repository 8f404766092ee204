import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import fc from 'fast-check';
import { createS3Client } from '../src/storage/s3-client';
import { PROBE_KEY, QueryPresigner, targetFromSdkUrl } from '../src/storage/query-presigner';
import { createUrlSigner, type ResponseOverrides } from '../src/storage/url-signer';

// Signing needs no network: these clients are never sent a request.
const credentials = {
  accessKeyId: 'AKIDEXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
};
const temporary = {
  ...credentials,
  sessionToken: 'FwoGZXIvYXdzEJr//////////wEaDGV4YW1wbGUtdG9rZW4=',
};

const endpoints = [
  {
    name: 'AWS virtual-hosted',
    region: 'eu-west-1',
    endpoint: undefined,
    forcePathStyle: false,
    bucket: 'my-images',
  },
  {
    name: 'AWS us-east-1',
    region: 'us-east-1',
    endpoint: undefined,
    forcePathStyle: false,
    bucket: 'photos-2026',
  },
  {
    name: 'MinIO path style',
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9000',
    forcePathStyle: true,
    bucket: 'img',
  },
  {
    name: 'HTTPS custom port',
    region: 'auto',
    endpoint: 'https://s3.example.test:8443',
    forcePathStyle: true,
    bucket: 'b1',
  },
];

const keyArbitrary = fc.oneof(
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
  fc.constantFrom(
    'images/a b.png',
    'images/a+b=c%d:e.png',
    "x/!'()*~.jpg",
    'ü/写真 1.png',
    'a//b',
    'trailing/',
  ),
);

const overridesArbitrary: fc.Arbitrary<ResponseOverrides> = fc.record(
  {
    cacheControl: fc.constantFrom('private, max-age=31536000, immutable', 'no-cache'),
    expires: fc.date({
      min: new Date('2020-01-01'),
      max: new Date('2040-01-01'),
      noInvalidDate: true,
    }),
    contentDisposition: fc.constantFrom(
      'attachment; filename="a b.png"; filename*=UTF-8\'\'%E5%86%99%20b.png',
      'inline',
    ),
    contentType: fc.constantFrom('image/png', 'image/jpeg; charset=binary'),
  },
  { requiredKeys: [] },
);

describe.each(endpoints)(
  'QueryPresigner on $name',
  ({ region, endpoint, forcePathStyle, bucket }) => {
    it('matches the SDK byte for byte', async () => {
      for (const creds of [credentials, temporary]) {
        const client = createS3Client({ region, endpoint, forcePathStyle, credentials: creds });
        const signingDate = new Date(Date.UTC(2026, 11, 4, 10, 0, 0));
        const probe = await getSignedUrl(
          client,
          new GetObjectCommand({ Bucket: bucket, Key: PROBE_KEY }),
          {
            signingDate,
            expiresIn: 60,
          },
        );
        const presigner = new QueryPresigner(targetFromSdkUrl(probe));

        await fc.assert(
          fc.asyncProperty(
            keyArbitrary,
            overridesArbitrary,
            fc.boolean(),
            fc.integer({ min: 1, max: 604800 }),
            async (key, o, head, expiresIn) => {
              const input = {
                Bucket: bucket,
                Key: key,
                ResponseCacheControl: o.cacheControl,
                ResponseExpires: o.expires,
                ResponseContentDisposition: o.contentDisposition,
                ResponseContentType: o.contentType,
              };
              const command = head ? new HeadObjectCommand(input) : new GetObjectCommand(input);
              const expected = await getSignedUrl(client, command, { signingDate, expiresIn });
              const query: Record<string, string> = head ? {} : { 'x-id': 'GetObject' };
              if (o.cacheControl !== undefined) query['response-cache-control'] = o.cacheControl;
              if (o.contentDisposition !== undefined)
                query['response-content-disposition'] = o.contentDisposition;
              if (o.contentType !== undefined) query['response-content-type'] = o.contentType;
              if (o.expires !== undefined) query['response-expires'] = o.expires.toUTCString();
              const actual = presigner.presign({
                method: head ? 'HEAD' : 'GET',
                key,
                query,
                credentials: creds,
                signingDate,
                expiresInSeconds: expiresIn,
              });

              expect(actual).toBe(expected);
            },
          ),
          { numRuns: 150 },
        );
      }
    });
  },
);

describe('createUrlSigner', () => {
  it('uses the fast presigner after its self-check', async () => {
    const client = createS3Client({ region: 'eu-west-1', credentials });
    const disabled: string[] = [];
    const signer = createUrlSigner({
      client,
      bucket: 'my-images',
      windowSeconds: 3600,
      minValiditySeconds: 600,
      onFastPathDisabled: (reason) => disabled.push(reason),
    });
    const url = await signer.sign({ key: 'images/a b.png' });

    expect(disabled).toEqual([]);
    expect(await signer.usesFastPath()).toBe(true);
    expect(url).toBe(
      await getSignedUrl(
        client,
        new GetObjectCommand({ Bucket: 'my-images', Key: 'images/a b.png' }),
        {
          signingDate: new Date(signer.windowStart() * 1000),
          expiresIn: 4200,
        },
      ),
    );
  });

  it('falls back to the SDK when told to', async () => {
    const client = createS3Client({ region: 'eu-west-1', credentials });
    const signer = createUrlSigner({
      client,
      bucket: 'my-images',
      windowSeconds: 3600,
      minValiditySeconds: 600,
      fastPath: false,
    });
    await signer.sign({ key: 'images/x.png' });

    expect(await signer.usesFastPath()).toBe(false);
  });

  it('memoizes per window, method and overrides', async () => {
    const client = createS3Client({ region: 'eu-west-1', credentials });
    const signer = createUrlSigner({
      client,
      bucket: 'my-images',
      windowSeconds: 3600,
      minValiditySeconds: 600,
    });
    const get1 = await signer.sign({ key: 'k.png' });
    const get2 = await signer.sign({ key: 'k.png' });
    const head = await signer.sign({ key: 'k.png', method: 'HEAD' });
    const download = await signer.sign({
      key: 'k.png',
      overrides: { contentDisposition: 'attachment' },
    });

    expect(get2).toBe(get1);
    expect(head).not.toBe(get1);
    expect(download).not.toBe(get1);
    expect(signer.stats).toEqual({ hits: 1, misses: 3, clamped: 0 });
  });
});
