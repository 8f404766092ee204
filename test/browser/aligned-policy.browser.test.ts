import fs from 'node:fs';
import type { Page } from 'playwright-core';
import { presignedUrlExpiry } from '../../src/storage/url-signer';
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
  waitForFreshSigningWindow,
} from './gallery-page';

const describeInBrowser = browserDescribe();

const SETUP_TIMEOUT_MS = 60_000;
const VIEW_TIMEOUT_MS = 30_000;

/** Time that the first view needs, with room to spare, within one signing window. */
const WINDOW_MARGIN_SECONDS = 45;

const CACHED_REDIRECT_PATTERN = /^private, max-age=(\d+)$/;

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
  /** Image hops to the app's `/image/:id`. */
  redirects: Exchange[];
  /** Image hops to the S3 endpoint. */
  s3: Exchange[];
  /** `/image/:id` requests that reached the app during the view. */
  appRequests: LoggedImageRequest[];
}

/** Repeat `value` once per uploaded image, as the expected list of a per-image check. */
function forEveryImage<T>(value: T): T[] {
  return GALLERY_FIXTURES.map(() => value);
}

/** Map each `/image/:id` URL to the signed URL its 302 pointed to. */
function locationsOf(view: GalleryView): Map<string, string | undefined> {
  return new Map(view.redirects.map((exchange) => [exchange.url, exchange.redirectedTo]));
}

/** List the signed URLs that the view's 302s pointed to. */
function signedUrlsOf(view: GalleryView): string[] {
  return view.redirects.map((exchange) => exchange.redirectedTo ?? '');
}

/** max-age of a 302's `Cache-Control: private, max-age=N`, or undefined for any other value. */
function redirectMaxAge(exchange: Exchange): number | undefined {
  const match = CACHED_REDIRECT_PATTERN.exec(exchange.headers['cache-control'] ?? '');
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

describeInBrowser('aligned redirect caching in Chromium', () => {
  let stack: TestStack;
  let s3Origin: string;
  let browser: BrowserSession;
  let mainTab: Tab;
  let firstView: GalleryView;
  /** Clock readings around the first view, in milliseconds, to bound the max-age it received. */
  let firstViewStartMs: number;
  let firstViewEndMs: number;
  const repeatViews = new Map<string, GalleryView>();

  const galleryUrl = () => `${stack.url}/`;

  async function openTab(page: Page): Promise<Tab> {
    return { page, recorder: await NetworkRecorder.attach(browser.context, page) };
  }

  /**
   * Run `navigate` as one gallery view on `tab`: wait for every image and for the DevTools events
   * of each, then split the image hops by host.
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
    const imageHops = exchanges.filter((exchange) => exchange.resourceType === 'Image');
    return {
      images,
      exchanges,
      redirects: imageHops.filter((exchange) => exchange.url.startsWith(`${stack.url}/image/`)),
      s3: imageHops.filter((exchange) => new URL(exchange.url).origin === s3Origin),
      appRequests: imageRequestsInLog(stack.logs.lines.slice(firstLogLine)),
    };
  }

  // Filled as each part starts, so a failed start still closes what did start.
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    stack = await startTestStack({ REDIRECT_CACHE: 'aligned' });
    closers.push(async () => {
      await stack.stop();
      fs.rmSync(stack.dataDir, { recursive: true, force: true });
    });
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
    beforeAll(
      async () => {
        const files = await Promise.all(GALLERY_FIXTURES.map(renderFixture));
        await waitForFreshSigningWindow(stack, WINDOW_MARGIN_SECONDS);

        firstViewStartMs = Date.now();
        firstView = await recordView(mainTab, () =>
          uploadThroughForm(mainTab.page, stack.url, files),
        );
        firstViewEndMs = Date.now();
      },
      SETUP_TIMEOUT_MS + WINDOW_MARGIN_SECONDS * 1000,
    );

    it('decodes every uploaded image', () => {
      const names = firstView.images.map((image) => image.alt).sort();
      const undecoded = firstView.images
        .filter((image) => image.naturalWidth === 0)
        .map((image) => image.src);

      expect(names).toEqual(GALLERY_FIXTURES.map((fixture) => fixture.name).sort());
      expect(undecoded).toEqual([]);
    });

    it('answers every /image/:id with 302', () => {
      const statuses = firstView.redirects.map((exchange) => exchange.status);
      const fromCache = firstView.redirects.filter(isFromCache).map((exchange) => exchange.url);

      expect(statuses).toEqual(forEveryImage(302));
      expect(fromCache).toEqual([]);
    });

    it('caches every 302 privately', () => {
      const others = firstView.redirects
        .map((exchange) => exchange.headers['cache-control'])
        .filter((value) => !CACHED_REDIRECT_PATTERN.test(value ?? ''));

      expect(others).toEqual([]);
    });

    it('keeps max-age within the URL lifetime', () => {
      const { windowSeconds, minValiditySeconds } = stack.runtime.config.signedUrl;
      const maxAges = firstView.redirects.map((exchange) => redirectMaxAge(exchange) ?? NaN);

      expect(Math.min(...maxAges)).toBeGreaterThanOrEqual(1);
      expect(Math.max(...maxAges)).toBeLessThanOrEqual(windowSeconds + minValiditySeconds);
    });

    // The router sets max-age to the whole seconds left until the URL expires, less the margin,
    // when it sends the 302. That moment lies between the two clock readings.
    it('ends max-age a margin before expiry', () => {
      const { marginSeconds } = stack.runtime.config.redirectCache;
      const outOfRange = firstView.redirects
        .map((exchange) => {
          const expiryMs = presignedUrlExpiry(exchange.redirectedTo ?? '');
          return {
            url: exchange.url,
            maxAge: redirectMaxAge(exchange),
            lowest: Math.floor((expiryMs - firstViewEndMs) / 1000) - marginSeconds,
            highest: Math.floor((expiryMs - firstViewStartMs) / 1000) - marginSeconds,
          };
        })
        .filter(
          ({ maxAge, lowest, highest }) =>
            !(maxAge !== undefined && maxAge >= lowest && maxAge <= highest),
        );

      expect(outOfRange).toEqual([]);
    });

    it('signs URLs with response-cache-control=private', () => {
      const values = signedUrlsOf(firstView).map((url) =>
        new URL(url).searchParams.get('response-cache-control'),
      );

      expect(values).toEqual(forEveryImage('private'));
    });

    it('signs URLs with response-expires at their expiry', () => {
      const mismatched = signedUrlsOf(firstView)
        .map((url) => ({
          url,
          expires: Date.parse(new URL(url).searchParams.get('response-expires') ?? ''),
          expiry: presignedUrlExpiry(url),
        }))
        .filter(({ expires, expiry }) => expires !== expiry);

      expect(mismatched).toEqual([]);
    });

    it('downloads every image from S3', () => {
      const downloaded = firstView.s3.filter((exchange) => !isFromCache(exchange));
      // Content-Length checks the byte count that bodyBytes reports.
      const miscounted = downloaded.filter(
        (exchange) => exchange.bodyBytes !== Number(exchange.headers['content-length']),
      );

      expect(downloaded.map((exchange) => exchange.status)).toEqual(forEveryImage(200));
      expect(miscounted).toEqual([]);
    });

    it('receives Cache-Control private from S3', () => {
      const values = firstView.s3.map((exchange) => exchange.headers['cache-control']);

      expect(values).toEqual(forEveryImage('private'));
    });

    it('receives Expires at the URL expiry from S3', () => {
      const mismatched = firstView.s3
        .map((exchange) => ({
          url: exchange.url,
          expires: Date.parse(exchange.headers.expires ?? ''),
          expiry: presignedUrlExpiry(exchange.url),
        }))
        .filter(({ expires, expiry }) => expires !== expiry);

      expect(firstView.s3).toHaveLength(GALLERY_FIXTURES.length);
      expect(mismatched).toEqual([]);
    });
  });

  // Observed in Chromium 156: a new tab gets its own renderer process, so its memory cache starts
  // empty.
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
  ])('%s', (label, record) => {
    let view: GalleryView;

    beforeAll(async () => {
      view = await record();
      repeatViews.set(label, view);
    }, VIEW_TIMEOUT_MS);

    it('decodes every image', () => {
      const undecoded = view.images
        .filter((image) => image.naturalWidth === 0)
        .map((image) => image.src);

      expect(view.images).toHaveLength(GALLERY_FIXTURES.length);
      expect(undecoded).toEqual([]);
    });

    it('sends no request to /image/:id', () => {
      const sent = view.redirects.filter((exchange) => !isFromCache(exchange));

      expect(view.redirects).toHaveLength(GALLERY_FIXTURES.length);
      expect(sent).toEqual([]);
      expect(view.appRequests).toEqual([]);
    });

    it('sends no request to S3', () => {
      const sent = view.exchanges.filter(
        (exchange) => new URL(exchange.url).origin === s3Origin && !isFromCache(exchange),
      );

      expect(sent).toEqual([]);
    });

    // encodedDataLength counts headers too, so 0 means that nothing at all came over the network.
    it('receives no bytes for images', () => {
      const imageHops = [...view.redirects, ...view.s3];
      const bytes = imageHops.map((exchange) => exchange.encodedDataLength);

      expect(bytes).toEqual(imageHops.map(() => 0));
    });
  });

  // Which cache served each repeat view, as observed in Chromium 156. Navigation and reload take
  // each image from the renderer's memory cache under its `/image/:id` URL, without replaying the
  // 302. In redirect mode, whose 302 is no-store, the same views request `/image/:id` again.
  describe('caches used', () => {
    const viewOf = (label: string): GalleryView => {
      const view = repeatViews.get(label);
      if (!view) throw new Error(`"${label}" did not run, so its cache cannot be checked`);
      return view;
    };

    it('serves navigation from the memory cache', () => {
      const view = viewOf('repeat view by navigation');

      expect(view.redirects.map((exchange) => exchange.servedFromCache)).toEqual(
        forEveryImage(true),
      );
      expect(view.s3).toEqual([]);
    });

    it('serves reload from the memory cache', () => {
      const view = viewOf('repeat view by reload');

      expect(view.redirects.map((exchange) => exchange.servedFromCache)).toEqual(
        forEveryImage(true),
      );
      expect(view.s3).toEqual([]);
    });

    it('replays the cached 302s in a new tab', () => {
      const view = viewOf('repeat view in a new tab');

      expect(view.redirects.map((exchange) => exchange.status)).toEqual(forEveryImage(302));
      expect(view.redirects.map((exchange) => exchange.fromDiskCache)).toEqual(forEveryImage(true));
      expect(locationsOf(view)).toEqual(locationsOf(firstView));
    });

    it('serves a new tab from the HTTP cache', () => {
      const view = viewOf('repeat view in a new tab');

      expect(view.s3.map((exchange) => exchange.status)).toEqual(forEveryImage(200));
      expect(view.s3.map((exchange) => exchange.fromDiskCache)).toEqual(forEveryImage(true));
    });
  });
});
