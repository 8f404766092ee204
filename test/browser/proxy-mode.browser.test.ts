import fs from 'node:fs';
import type { Page } from 'playwright-core';
import { ADMIN_PASSWORD, startTestStack, type TestStack } from '../helpers/stack';
import {
  isFromCache,
  launchChromium,
  NetworkRecorder,
  type BrowserSession,
  type Exchange,
  browserDescribe,
} from './chromium';
import {
  GALLERY_FIXTURES,
  imageRequestsInLog,
  renderFixture,
  signIn,
  uploadThroughForm,
  waitForGalleryImages,
  type GalleryImage,
  type LoggedImageRequest,
} from './gallery-page';

const describeInBrowser = browserDescribe();

const SETUP_TIMEOUT_MS = 60_000;
const VIEW_TIMEOUT_MS = 30_000;

/** A page and the recorder attached to it. */
interface Tab {
  page: Page;
  recorder: NetworkRecorder;
}

/** What one gallery view loaded, from the page, the DevTools protocol and the app's log. */
interface GalleryView {
  images: GalleryImage[];
  /** Every hop of the view, of any resource type, whether sent or taken from a cache. */
  exchanges: Exchange[];
  /** Hops of resource type "Image". */
  imageHops: Exchange[];
  /** `/image/:id` requests that reached the app during the view. */
  appRequests: LoggedImageRequest[];
}

/** Repeat `value` once per uploaded image, as the expected list of a per-image check. */
function forEveryImage<T>(value: T): T[] {
  return GALLERY_FIXTURES.map(() => value);
}

describeInBrowser('proxy mode in Chromium', () => {
  let stack: TestStack;
  let s3Origin: string;
  let browser: BrowserSession;
  let mainTab: Tab;
  let firstView: GalleryView;

  const galleryUrl = () => `${stack.url}/`;

  /** Return whether `url` is exactly the app's `/image/:id`: same origin and no query. */
  function isAppImageUrl(url: string): boolean {
    const parsed = new URL(url);
    return (
      parsed.origin === stack.url && /^\/image\/[\w-]+$/.test(parsed.pathname) && !parsed.search
    );
  }

  async function openTab(page: Page): Promise<Tab> {
    return { page, recorder: await NetworkRecorder.attach(browser.context, page) };
  }

  /**
   * Run `navigate` as one gallery view on `tab`: wait for every image and for the DevTools events
   * of each, then collect what the view loaded.
   */
  async function recordView(tab: Tab, navigate: () => Promise<unknown>): Promise<GalleryView> {
    tab.recorder.clear();
    const firstLogLine = stack.logs.lines.length;
    await navigate();
    const images = await waitForGalleryImages(tab.page);
    await tab.recorder.settle(
      VIEW_TIMEOUT_MS / 3,
      images.map((image) => new URL(image.src, stack.url).toString()),
    );
    const exchanges = [...tab.recorder.exchanges];
    return {
      images,
      exchanges,
      imageHops: exchanges.filter((exchange) => exchange.resourceType === 'Image'),
      appRequests: imageRequestsInLog(stack.logs.lines.slice(firstLogLine)),
    };
  }

  // Filled as each part starts, so a failed start still closes what did start.
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    stack = await startTestStack({ DELIVERY_MODE: 'proxy' });
    closers.push(async () => {
      await stack.stop();
      fs.rmSync(stack.dataDir, { recursive: true, force: true });
    });
    // The signer exists in proxy mode too, so it gives the S3 endpoint that the browser must not reach.
    s3Origin = new URL(await stack.runtime.signer.sign({ key: 'origin-probe' })).origin;
    browser = await launchChromium();
    closers.push(() => browser.close());
    mainTab = await openTab(browser.page);
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    for (const close of closers.reverse()) await close();
  }, SETUP_TIMEOUT_MS);

  it('signs in through the login form', async () => {
    await signIn(browser.page, stack.url, 'admin', ADMIN_PASSWORD);

    expect(browser.page.url()).toBe(galleryUrl());
    expect(await browser.page.locator('.who').textContent()).toBe('Signed in as admin');
  });

  // The upload page ends on the gallery, so its images are the first view.
  describe('first view', () => {
    beforeAll(async () => {
      const files = await Promise.all(GALLERY_FIXTURES.map(renderFixture));
      firstView = await recordView(mainTab, () =>
        uploadThroughForm(mainTab.page, stack.url, files),
      );
    }, SETUP_TIMEOUT_MS);

    it('confirms the upload', async () => {
      expect(mainTab.page.url()).toBe(`${stack.url}/?uploaded=${GALLERY_FIXTURES.length}`);
      expect(await mainTab.page.getByRole('status').textContent()).toBe(
        `Uploaded ${GALLERY_FIXTURES.length} images.`,
      );
    });

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

    it('answers every /image/:id with 200', () => {
      expect(firstView.imageHops.map((exchange) => exchange.status)).toEqual(forEveryImage(200));
    });

    it('sends the immutable Cache-Control', () => {
      const expected = `private, max-age=${stack.runtime.config.images.cacheMaxAgeSeconds}, immutable`;
      const values = firstView.imageHops.map((exchange) => exchange.headers['cache-control']);

      expect(values).toEqual(forEveryImage(expected));
    });

    it('sends an ETag', () => {
      const invalid = firstView.imageHops
        .filter((exchange) => !/^(W\/)?"[^"]+"$/.test(exchange.headers.etag ?? ''))
        .map((exchange) => exchange.url);

      expect(invalid).toEqual([]);
    });

    it('sends Last-Modified', () => {
      const invalid = firstView.imageHops
        .filter((exchange) => Number.isNaN(Date.parse(exchange.headers['last-modified'] ?? '')))
        .map((exchange) => exchange.url);

      expect(invalid).toEqual([]);
    });

    it('downloads every image from the app', () => {
      const downloaded = firstView.imageHops.filter((exchange) => !isFromCache(exchange));
      // Content-Length checks the byte count that the repeat views expect to be 0.
      const miscounted = downloaded.filter(
        (exchange) => exchange.bodyBytes !== Number(exchange.headers['content-length']),
      );

      expect(downloaded).toHaveLength(GALLERY_FIXTURES.length);
      expect(miscounted).toEqual([]);
      expect(firstView.appRequests.map((request) => request.status)).toEqual(forEveryImage(200));
    });

    it('loads images only from /image/:id', () => {
      const elsewhere = firstView.imageHops
        .map((exchange) => exchange.url)
        .filter((url) => !isAppImageUrl(url));

      expect(elsewhere).toEqual([]);
    });

    it('sends no request to S3', () => {
      const toS3 = firstView.exchanges.filter(
        (exchange) => new URL(exchange.url).origin === s3Origin,
      );

      expect(toS3).toEqual([]);
    });
  });

  // Chromium 156 serves navigation and reload from the renderer's memory cache. A new tab gets its
  // own renderer process with an empty memory cache, so it reads the HTTP cache instead.
  describe.each([
    [
      'repeat view by navigation',
      () =>
        recordView(mainTab, () => mainTab.page.goto(galleryUrl(), { timeout: VIEW_TIMEOUT_MS })),
    ],
    [
      'repeat view by reload',
      () => recordView(mainTab, () => mainTab.page.reload({ timeout: VIEW_TIMEOUT_MS })),
    ],
    [
      'repeat view in a new tab',
      async () => {
        const tab = await openTab(await browser.context.newPage());
        return recordView(tab, () => tab.page.goto(galleryUrl(), { timeout: VIEW_TIMEOUT_MS }));
      },
    ],
  ])('%s', (_label, record) => {
    let view: GalleryView;

    beforeAll(async () => {
      view = await record();
    }, VIEW_TIMEOUT_MS);

    it('decodes every image', () => {
      const undecoded = view.images
        .filter((image) => image.naturalWidth === 0)
        .map((image) => image.src);

      expect(view.images).toHaveLength(GALLERY_FIXTURES.length);
      expect(undecoded).toEqual([]);
    });

    it('loads images only from /image/:id', () => {
      const elsewhere = view.imageHops
        .map((exchange) => exchange.url)
        .filter((url) => !isAppImageUrl(url));

      expect(view.imageHops).toHaveLength(GALLERY_FIXTURES.length);
      expect(elsewhere).toEqual([]);
    });

    it('takes every image from the cache or a 304', () => {
      // DevTools reports a revalidated image as the cached 200, so the 304 is read from the log.
      const sentPaths = view.imageHops
        .filter((exchange) => !isFromCache(exchange))
        .map((exchange) => new URL(exchange.url).pathname)
        .sort();
      const revalidatedPaths = view.appRequests
        .filter((request) => request.status === 304)
        .map((request) => request.path)
        .sort();

      expect(sentPaths).toEqual(revalidatedPaths);
    });

    it('answers only with 304 at the app', () => {
      const notRevalidated = view.appRequests.filter((request) => request.status !== 304);

      expect(notRevalidated).toEqual([]);
    });

    it('receives no image bytes', () => {
      const bytes = view.imageHops.map((exchange) => exchange.bodyBytes);

      expect(bytes).toEqual(forEveryImage(0));
    });

    it('sends no request to S3', () => {
      const toS3 = view.exchanges.filter((exchange) => new URL(exchange.url).origin === s3Origin);

      expect(toS3).toEqual([]);
    });
  });

  // Control: `cache: 'no-cache'` makes the browser revalidate every image. It shows how a 304 looks
  // in the measurements above: the app logs 304, and DevTools reports the cached 200 with headers
  // from the network and no body bytes.
  describe('revalidation by fetch', () => {
    let revalidations: Exchange[];
    let appRequests: LoggedImageRequest[];
    let bodyLengths: number[];

    beforeAll(async () => {
      const sources = firstView.images.map((image) => image.src);
      mainTab.recorder.clear();
      const firstLogLine = stack.logs.lines.length;
      bodyLengths = await mainTab.page.evaluate((urls) => {
        // Node's RequestInit type has no `cache`, but this function runs in the browser.
        const init: RequestInit & { cache: string } = { cache: 'no-cache' };
        return Promise.all(
          urls.map(async (url) => {
            const response = await fetch(url, init);
            return (await response.arrayBuffer()).byteLength;
          }),
        );
      }, sources);
      await mainTab.recorder.settle(
        VIEW_TIMEOUT_MS / 3,
        sources.map((source) => new URL(source, stack.url).toString()),
      );
      revalidations = mainTab.recorder.exchanges.filter((exchange) => isAppImageUrl(exchange.url));
      appRequests = imageRequestsInLog(stack.logs.lines.slice(firstLogLine));
    }, VIEW_TIMEOUT_MS);

    it('answers every revalidation with 304', () => {
      expect(appRequests.map((request) => request.status)).toEqual(forEveryImage(304));
    });

    it('receives the response headers', () => {
      const sent = revalidations.filter((exchange) => !isFromCache(exchange));
      const withoutHeaders = sent.filter((exchange) => (exchange.encodedDataLength ?? 0) === 0);

      expect(sent).toHaveLength(GALLERY_FIXTURES.length);
      expect(withoutHeaders).toEqual([]);
    });

    it('receives no body bytes', () => {
      expect(revalidations.map((exchange) => exchange.bodyBytes)).toEqual(forEveryImage(0));
    });

    it('returns the cached bodies', () => {
      const downloaded = new Map(
        firstView.imageHops.map((exchange) => [exchange.url, exchange.bodyBytes]),
      );
      const downloadedLengths = firstView.images.map((image) =>
        downloaded.get(new URL(image.src, stack.url).toString()),
      );

      expect(bodyLengths).toEqual(downloadedLengths);
    });
  });
});
