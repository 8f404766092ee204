import type { Page } from 'playwright-core';
import sharp from 'sharp';
import { launchChromium, NetworkRecorder, type Exchange } from '../test/browser/chromium';
import { signIn, startBenchServer, upload, type BenchServer } from './harness';

export type PolicyName = 'default' | 'naive' | 'proxy' | 'aligned';

export interface ViewMetrics {
  /** Requests that reached the app over the network (page, assets, /image/:id). */
  appRequests: number;
  /** Requests that reached the S3 server over the network. */
  s3Requests: number;
  /** Image requests of any kind over the network: /image/:id (302, 200 or 304) and S3. */
  imageRequests: number;
  /** Image body bytes received over the network. */
  imageBytes: number;
  /** Time from navigation start to the end of the load event, in milliseconds. */
  loadMs: number;
}

export interface PageResult {
  policy: PolicyName;
  images: number;
  averageImageBytes: number;
  first: ViewMetrics;
  repeat: ViewMetrics;
}

const IMAGE_COUNT = 50;

/** 50 distinct noise JPEGs of about 100 KB each; noise keeps JPEG from compressing them away. */
async function makeGalleryImages(): Promise<Buffer[]> {
  const images: Buffer[] = [];
  for (let i = 0; i < IMAGE_COUNT; i += 1) {
    images.push(
      await sharp({
        create: {
          width: 420,
          height: 315,
          channels: 3,
          background: '#000',
          noise: { type: 'gaussian', mean: 100 + i, sigma: 60 },
        },
      })
        .jpeg({ quality: 90 })
        .toBuffer(),
    );
  }
  return images;
}

/** The browser globals read in page.evaluate, typed here because tsconfig has no DOM library. */
interface BrowserGlobals {
  performance: { getEntriesByType(type: string): { loadEventEnd: number; startTime: number }[] };
}

/** Wait until the page has all gallery images and each has decoded. */
async function waitForImages(page: Page): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const states = await page.locator('img').evaluateAll((elements) =>
      elements.map((element) => {
        const image = element as unknown as { complete: boolean; naturalWidth: number };
        return image.complete && image.naturalWidth > 0;
      }),
    );
    if (states.length === IMAGE_COUNT && states.every(Boolean)) return;
    if (Date.now() > deadline)
      throw new Error(`only ${states.filter(Boolean).length} of ${IMAGE_COUNT} images decoded`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function summarize(exchanges: Exchange[], appOrigin: string, loadMs: number): ViewMetrics {
  const network = exchanges.filter(
    (e) => !e.fromDiskCache && !e.servedFromCache && e.failure === undefined,
  );
  const origin = (url: string) => new URL(url).origin;
  return {
    appRequests: network.filter((e) => origin(e.url) === appOrigin).length,
    s3Requests: network.filter((e) => origin(e.url) !== appOrigin).length,
    imageRequests: network.filter(
      (e) => e.resourceType === 'Image' || new URL(e.url).pathname.startsWith('/image/'),
    ).length,
    imageBytes: network
      .filter((e) => e.resourceType === 'Image')
      .reduce((sum, e) => sum + e.bodyBytes, 0),
    loadMs,
  };
}

async function viewGallery(
  server: BenchServer,
  cookie: string,
  path: string,
  policy: PolicyName,
): Promise<PageResult> {
  const session = await launchChromium({ width: 1280, height: 6000 });
  try {
    const { url } = server;
    const cookieValue = cookie.slice(cookie.indexOf('=') + 1);
    await session.context.addCookies([{ name: 's3gate.sid', value: cookieValue, url }]);
    const recorder = await NetworkRecorder.attach(session.context, session.page);

    const view = async (): Promise<ViewMetrics> => {
      recorder.clear();
      await session.page.goto(`${url}${path}`, { waitUntil: 'load' });
      await waitForImages(session.page);
      await recorder.settle(15_000);
      const loadMs = await session.page.evaluate(() => {
        // Runs in the page; the project's TypeScript settings have no DOM types.
        const timing = (globalThis as unknown as BrowserGlobals).performance.getEntriesByType(
          'navigation',
        )[0];
        return timing ? timing.loadEventEnd - timing.startTime : -1;
      });
      return summarize(recorder.exchanges, url, Math.round(loadMs));
    };

    const first = await view();
    // SigV4 dates have one-second resolution, so a repeat view in the same second as the first
    // would get the naive route's URLs again and read them from the cache. Waiting over a second
    // gives the naive route fresh signatures; s3gate's signing window is an hour long.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const repeat = await view();
    return { policy, images: IMAGE_COUNT, averageImageBytes: 0, first, repeat };
  } finally {
    await session.close();
  }
}

/**
 * First and repeat view of a 50-image gallery in Chromium, one fresh browser profile per
 * policy: s3gate's default, a naive fresh signature per request (for comparison only), proxy
 * mode, and REDIRECT_CACHE=aligned. The repeat view is a second navigation to the same page
 * within the signing window.
 */
export async function benchPages(): Promise<PageResult[]> {
  const images = await makeGalleryImages();
  const averageImageBytes = Math.round(
    images.reduce((sum, b) => sum + b.length, 0) / images.length,
  );
  const setups: { policy: PolicyName; env: Record<string, string>; path: string }[] = [
    { policy: 'default', env: {}, path: '/' },
    { policy: 'naive', env: {}, path: '/bench/naive-gallery' },
    { policy: 'proxy', env: { DELIVERY_MODE: 'proxy' }, path: '/' },
    { policy: 'aligned', env: { REDIRECT_CACHE: 'aligned' }, path: '/' },
  ];

  const results: PageResult[] = [];
  for (const setup of setups) {
    const server = await startBenchServer(setup.env);
    try {
      const cookie = await signIn(server.url);
      for (const [i, bytes] of images.entries())
        await upload(server.url, cookie, bytes, `photo-${i}.jpg`);
      results.push({
        ...(await viewGallery(server, cookie, setup.path, setup.policy)),
        averageImageBytes,
      });
    } finally {
      await server.stop();
    }
  }
  return results;
}

if (require.main === module) {
  void benchPages().then((r) => {
    console.log(JSON.stringify(r, null, 2));
  });
}
