import fs from 'node:fs';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { ImageRepository } from '../../src/images/image-repository';
import { REDIRECT_CACHE_CONTROL } from '../../src/images/image-router';
import { ADMIN_PASSWORD, startTestStack, type TestStack } from '../helpers/stack';
import {
  launchChromium,
  NetworkRecorder,
  type BrowserSession,
  type Exchange,
  browserDescribe,
  isFromCache,
} from './chromium';
import {
  GALLERY_FIXTURES,
  renderFixture,
  replaceImageSources,
  signIn,
  uploadThroughForm,
  waitForGalleryImages,
  type GalleryImage,
  waitForFreshSigningWindow,
} from './gallery-page';

const describeInBrowser = browserDescribe();

const SETUP_TIMEOUT_MS = 60_000;
const VIEW_TIMEOUT_MS = 30_000;

/** Time that the views in this file need, with room to spare, within one signing window. */
const WINDOW_MARGIN_SECONDS = 45;

/** Query parameters that change when a URL is signed at another time. */
const SIGNING_TIME_PARAMETERS = ['X-Amz-Date', 'X-Amz-Signature'];

/** What one gallery view loaded, from the `<img>` elements and the DevTools protocol events. */
interface GalleryView {
  images: GalleryImage[];
  /** Image hops to the app's `/image/:id`. */
  redirects: Exchange[];
  /** Image hops to the S3 endpoint. */
  s3: Exchange[];
}

/** Repeat `value` once per uploaded image, as the expected list of a per-image check. */
function forEveryImage<T>(value: T): T[] {
  return GALLERY_FIXTURES.map(() => value);
}

/** Map each `/image/:id` URL to the signed URL its 302 pointed to. */
function locationsOf(view: GalleryView): Map<string, string | undefined> {
  return new Map(view.redirects.map((exchange) => [exchange.url, exchange.redirectedTo]));
}

/** Remove the query parameters that depend on the signing time. */
function withoutSigningTime(url: string): string {
  const parsed = new URL(url);
  for (const name of SIGNING_TIME_PARAMETERS) parsed.searchParams.delete(name);
  return parsed.toString();
}

describeInBrowser('gallery in Chromium', () => {
  let stack: TestStack;
  let s3Origin: string;
  let browser: BrowserSession;
  let recorder: NetworkRecorder;
  let firstView: GalleryView;

  /** Wait for the gallery's images and their requests, then split the image hops by host. */
  async function collectView(): Promise<GalleryView> {
    const images = await waitForGalleryImages(browser.page);
    await recorder.settle();
    const imageHops = recorder.exchanges.filter((exchange) => exchange.resourceType === 'Image');
    return {
      images,
      redirects: imageHops.filter((exchange) => exchange.url.startsWith(`${stack.url}/image/`)),
      s3: imageHops.filter((exchange) => new URL(exchange.url).origin === s3Origin),
    };
  }

  // Filled as each part starts, so a failed start still closes what did start.
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    stack = await startTestStack();
    closers.push(async () => {
      await stack.stop();
      fs.rmSync(stack.dataDir, { recursive: true, force: true });
    });
    s3Origin = new URL(await stack.runtime.signer.sign({ key: 'origin-probe' })).origin;
    browser = await launchChromium();
    closers.push(() => browser.close());
    recorder = await NetworkRecorder.attach(browser.context, browser.page);
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    for (const close of closers.reverse()) await close();
  }, SETUP_TIMEOUT_MS);

  it('signs in through the login form', async () => {
    await signIn(browser.page, stack.url, 'admin', ADMIN_PASSWORD);

    expect(browser.page.url()).toBe(`${stack.url}/`);
    expect(await browser.page.locator('.who').textContent()).toBe('Signed in as admin');
  });

  it(
    'uploads images through the upload page',
    async () => {
      const files = await Promise.all(GALLERY_FIXTURES.map(renderFixture));
      await waitForFreshSigningWindow(stack, WINDOW_MARGIN_SECONDS);

      recorder.clear();
      await uploadThroughForm(browser.page, stack.url, files);

      expect(browser.page.url()).toBe(`${stack.url}/?uploaded=${files.length}`);
      expect(await browser.page.getByRole('status').textContent()).toBe(
        `Uploaded ${files.length} images.`,
      );
    },
    SETUP_TIMEOUT_MS + WINDOW_MARGIN_SECONDS * 1000,
  );

  describe('first view', () => {
    beforeAll(async () => {
      firstView = await collectView();
    }, VIEW_TIMEOUT_MS);

    it('shows every uploaded image', () => {
      const names = firstView.images.map((image) => image.alt).sort();

      expect(names).toEqual(GALLERY_FIXTURES.map((fixture) => fixture.name).sort());
    });

    it('decodes every image', () => {
      const undecoded = firstView.images
        .filter((image) => image.naturalWidth === 0)
        .map((image) => image.src);

      expect(undecoded).toEqual([]);
    });

    it('downloads every image from S3', () => {
      const downloaded = firstView.s3.filter((exchange) => !isFromCache(exchange));

      expect(firstView.s3).toHaveLength(GALLERY_FIXTURES.length);
      expect(downloaded).toHaveLength(GALLERY_FIXTURES.length);
      expect(downloaded.filter((exchange) => (exchange.encodedDataLength ?? 0) === 0)).toEqual([]);
    });
  });

  describe.each([
    ['navigation', () => browser.page.goto(`${stack.url}/`, { timeout: VIEW_TIMEOUT_MS })],
    ['reload', () => browser.page.reload({ timeout: VIEW_TIMEOUT_MS })],
  ])('repeat view by %s', (_label, navigate) => {
    let view: GalleryView;

    beforeAll(async () => {
      recorder.clear();
      await navigate();
      view = await collectView();
    }, VIEW_TIMEOUT_MS);

    it('decodes every image', () => {
      const undecoded = view.images
        .filter((image) => image.naturalWidth === 0)
        .map((image) => image.src);

      expect(view.images).toHaveLength(GALLERY_FIXTURES.length);
      expect(undecoded).toEqual([]);
    });

    it('requests every /image/:id from the app', () => {
      const requested = view.redirects.map((exchange) => exchange.url).sort();
      const fromCache = view.redirects.filter(isFromCache).map((exchange) => exchange.url);

      expect(requested).toEqual(firstView.redirects.map((exchange) => exchange.url).sort());
      expect(fromCache).toEqual([]);
    });

    it('answers every /image/:id with 302', () => {
      const statuses = view.redirects.map((exchange) => exchange.status);

      expect(statuses).toEqual(forEveryImage(302));
    });

    it('sends the no-store headers on every 302', () => {
      const header = (name: string) => view.redirects.map((exchange) => exchange.headers[name]);

      expect(header('cache-control')).toEqual(forEveryImage(REDIRECT_CACHE_CONTROL));
      expect(header('pragma')).toEqual(forEveryImage('no-cache'));
      expect(header('expires')).toEqual(forEveryImage('0'));
    });

    it('redirects to the same signed URLs', () => {
      expect(locationsOf(view)).toEqual(locationsOf(firstView));
    });

    it('takes every image from the browser cache', () => {
      const cached = view.s3.filter(isFromCache);

      expect(view.s3).toHaveLength(GALLERY_FIXTURES.length);
      expect(cached).toHaveLength(GALLERY_FIXTURES.length);
    });

    it('sends no request to S3', () => {
      const sentToNetwork = view.s3
        .filter((exchange) => !isFromCache(exchange))
        .map((exchange) => exchange.url);

      expect(sentToNetwork).toEqual([]);
    });

    it('receives no image bytes', () => {
      const bytes = view.s3.map((exchange) => exchange.encodedDataLength);

      expect(bytes).toEqual(forEveryImage(0));
    });
  });

  // Control: the same objects under URLs signed at request time, as a handler that calls
  // getSignedUrl with the current time on every request would return them.
  describe('URLs signed at request time', () => {
    let resignedUrls: Map<string, string>;
    let view: GalleryView;

    beforeAll(async () => {
      const repository = new ImageRepository(stack.runtime.database.db);
      const { s3Client, config } = stack.runtime;
      resignedUrls = new Map();
      for (const [imageUrl, stableUrl] of locationsOf(firstView)) {
        const id = new URL(imageUrl).pathname.split('/').pop() ?? '';
        const image = await repository.findById(id);
        if (!image || !stableUrl) {
          throw new Error(`image metadata or signed URL missing for ${imageUrl}`);
        }

        const expiresIn = Number(new URL(stableUrl).searchParams.get('X-Amz-Expires'));
        const command = new GetObjectCommand({ Bucket: config.s3.bucket, Key: image.key });
        resignedUrls.set(`/image/${id}`, await getSignedUrl(s3Client, command, { expiresIn }));
      }

      recorder.clear();
      await replaceImageSources(browser.page, resignedUrls);
      view = await collectView();
    }, VIEW_TIMEOUT_MS);

    it('differ only in signing time', () => {
      const stableUrls = locationsOf(firstView);

      expect(resignedUrls.size).toBe(GALLERY_FIXTURES.length);
      for (const [imagePath, resignedUrl] of resignedUrls) {
        const stableUrl = stableUrls.get(`${stack.url}${imagePath}`) ?? '';

        expect(resignedUrl).not.toBe(stableUrl);
        expect(withoutSigningTime(resignedUrl)).toBe(withoutSigningTime(stableUrl));
      }
    });

    it('decodes every image', () => {
      const undecoded = view.images
        .filter((image) => image.naturalWidth === 0)
        .map((image) => image.src);

      expect(view.images).toHaveLength(GALLERY_FIXTURES.length);
      expect(undecoded).toEqual([]);
    });

    it('downloads every image again', () => {
      const downloaded = view.s3.filter((exchange) => !isFromCache(exchange));

      expect(view.s3).toHaveLength(GALLERY_FIXTURES.length);
      expect(downloaded).toHaveLength(GALLERY_FIXTURES.length);
      expect(downloaded.filter((exchange) => (exchange.encodedDataLength ?? 0) === 0)).toEqual([]);
    });
  });
});
