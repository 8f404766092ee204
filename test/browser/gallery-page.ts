import type { TestStack } from '../helpers/stack';
import type { Page } from 'playwright-core';
import sharp from 'sharp';

const NAVIGATION_TIMEOUT_MS = 15_000;
const IMAGE_LOAD_TIMEOUT_MS = 15_000;

/** A picture for the gallery: a sky gradient, a sun and a hill, so the screenshot is easy to read. */
export interface GalleryFixture {
  name: string;
  format: 'png' | 'jpeg' | 'webp' | 'gif';
  width: number;
  height: number;
  skyTop: string;
  skyBottom: string;
  sun: string;
  hill: string;
}

/** Eight pictures in four formats and eight sizes. Each name says what the picture shows. */
export const GALLERY_FIXTURES: readonly GalleryFixture[] = [
  {
    name: 'dunes.jpg',
    format: 'jpeg',
    width: 640,
    height: 420,
    skyTop: '#ff5f6d',
    skyBottom: '#ffc371',
    sun: '#fff3c4',
    hill: '#b5651d',
  },
  {
    name: 'lagoon.png',
    format: 'png',
    width: 480,
    height: 480,
    skyTop: '#36d1dc',
    skyBottom: '#b2fefa',
    sun: '#ffffff',
    hill: '#ff7f50',
  },
  {
    name: 'pines.webp',
    format: 'webp',
    width: 800,
    height: 450,
    skyTop: '#a8e063',
    skyBottom: '#e8f5c8',
    sun: '#fffde7',
    hill: '#1e5631',
  },
  {
    name: 'dusk.gif',
    format: 'gif',
    width: 320,
    height: 240,
    skyTop: '#41295a',
    skyBottom: '#b57edc',
    sun: '#f8e1ff',
    hill: '#2f0743',
  },
  {
    name: 'citrus.jpg',
    format: 'jpeg',
    width: 600,
    height: 400,
    skyTop: '#f7971e',
    skyBottom: '#ffd200',
    sun: '#ffffff',
    hill: '#6a994e',
  },
  {
    name: 'glacier.png',
    format: 'png',
    width: 500,
    height: 700,
    skyTop: '#2193b0',
    skyBottom: '#e0f7fa',
    sun: '#ffffff',
    hill: '#8ecae6',
  },
  {
    name: 'blossom.webp',
    format: 'webp',
    width: 720,
    height: 480,
    skyTop: '#ee9ca7',
    skyBottom: '#ffdde1',
    sun: '#fff5f7',
    hill: '#c9184a',
  },
  {
    name: 'harbour.gif',
    format: 'gif',
    width: 400,
    height: 300,
    skyTop: '#0f2027',
    skyBottom: '#2c5364',
    sun: '#fefae0',
    hill: '#14213d',
  },
];

const MIME_TYPES: Record<GalleryFixture['format'], string> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
};

/** Render a fixture with sharp, so the upload's magic-byte check gets a genuine file of its format. */
export async function renderFixture(
  fixture: GalleryFixture,
): Promise<{ name: string; mimeType: string; buffer: Buffer }> {
  const { width, height } = fixture;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
    <defs><linearGradient id="sky" x1="0" y1="0" x2="0" y2="1">
      <stop offset="0" stop-color="${fixture.skyTop}"/><stop offset="1" stop-color="${fixture.skyBottom}"/>
    </linearGradient></defs>
    <rect width="${width}" height="${height}" fill="url(#sky)"/>
    <circle cx="${width * 0.7}" cy="${height * 0.35}" r="${Math.min(width, height) * 0.14}" fill="${fixture.sun}"/>
    <ellipse cx="${width * 0.35}" cy="${height * 1.05}" rx="${width * 0.8}" ry="${height * 0.4}" fill="${fixture.hill}"/>
  </svg>`;
  const buffer = await sharp(Buffer.from(svg))[fixture.format]().toBuffer();
  return { name: fixture.name, mimeType: MIME_TYPES[fixture.format], buffer };
}

/** Sign in through the login form, as a user types, and wait for the gallery. */
export async function signIn(
  page: Page,
  baseUrl: string,
  username: string,
  password: string,
): Promise<void> {
  await page.goto(`${baseUrl}/login`, { timeout: NAVIGATION_TIMEOUT_MS });
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${baseUrl}/`, { timeout: NAVIGATION_TIMEOUT_MS });
}

/**
 * Upload files through the admin upload page. Its script posts each file with XHR and then
 * navigates to `/?uploaded=N`, so this returns on the gallery.
 */
export async function uploadThroughForm(
  page: Page,
  baseUrl: string,
  files: { name: string; mimeType: string; buffer: Buffer }[],
): Promise<void> {
  await page.goto(`${baseUrl}/admin/upload`, { timeout: NAVIGATION_TIMEOUT_MS });
  await page.setInputFiles('#files', files);
  await page.getByRole('button', { name: 'Upload' }).click();
  await page.waitForURL(`${baseUrl}/?uploaded=${files.length}`, { timeout: NAVIGATION_TIMEOUT_MS });
}

/** The fields of HTMLImageElement used here, because the project compiles without the DOM library. */
interface ImageElement {
  src: string;
  complete: boolean;
  naturalWidth: number;
  naturalHeight: number;
  getAttribute(name: string): string | null;
}

/** State of one gallery `<img>`. `src` is the attribute value, such as "/image/:id". */
export interface GalleryImage {
  src: string;
  alt: string;
  complete: boolean;
  naturalWidth: number;
  naturalHeight: number;
}

async function readGalleryImages(page: Page): Promise<GalleryImage[]> {
  return page.locator('ul.gallery img').evaluateAll((elements) =>
    (elements as unknown as ImageElement[]).map((image) => ({
      src: image.getAttribute('src') ?? '',
      alt: image.getAttribute('alt') ?? '',
      complete: image.complete,
      naturalWidth: image.naturalWidth,
      naturalHeight: image.naturalHeight,
    })),
  );
}

/**
 * Wait until every gallery image has loaded or failed, and return their states. The images are
 * `loading="lazy"`, so each is scrolled into view first, which starts its load.
 */
export async function waitForGalleryImages(page: Page): Promise<GalleryImage[]> {
  await page.waitForLoadState('load', { timeout: NAVIGATION_TIMEOUT_MS });
  const locator = page.locator('ul.gallery img');
  const count = await locator.count();
  for (let index = 0; index < count; index += 1) {
    await locator.nth(index).scrollIntoViewIfNeeded({ timeout: IMAGE_LOAD_TIMEOUT_MS });
  }

  const deadline = Date.now() + IMAGE_LOAD_TIMEOUT_MS;
  for (;;) {
    const images = await readGalleryImages(page);
    if (images.every((image) => image.complete)) return images;
    if (Date.now() > deadline) {
      const pending = images.filter((image) => !image.complete).map((image) => image.src);
      throw new Error(
        `timed out after ${IMAGE_LOAD_TIMEOUT_MS} ms waiting for gallery images: ${pending.join(', ')}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Point every gallery `<img>` whose `src` attribute is a key of `urlsBySrc` to the mapped URL,
 * so the browser loads the same objects under other URLs. Other images keep their source.
 */
export async function replaceImageSources(
  page: Page,
  urlsBySrc: Map<string, string>,
): Promise<void> {
  await page.locator('ul.gallery img').evaluateAll((elements, urls) => {
    for (const image of elements as unknown as ImageElement[]) {
      const replacement = urls[image.getAttribute('src') ?? ''];
      if (replacement !== undefined) image.src = replacement;
    }
  }, Object.fromEntries(urlsBySrc));
}

/** A request for `/image/:id` as the app's request log records it. */
export interface LoggedImageRequest {
  /** Path without the query string, such as "/image/:id". */
  path: string;
  status: number;
}

/**
 * Pick the `/image/:id` requests out of the app's log lines. The request logger writes one JSON line per
 * request, with `req.url` and `res.statusCode`. Other lines are skipped.
 */
export function imageRequestsInLog(lines: readonly string[]): LoggedImageRequest[] {
  const requests: LoggedImageRequest[] = [];
  for (const line of lines) {
    const entry = JSON.parse(line) as { req?: { url?: unknown }; res?: { statusCode?: unknown } };
    const url = entry.req?.url;
    const status = entry.res?.statusCode;
    if (typeof url !== 'string' || typeof status !== 'number') continue;
    if (!url.startsWith('/image/')) continue;
    requests.push({ path: url.replace(/\?.*$/, ''), status });
  }
  return requests;
}

/**
 * Wait for the next signing window when the current one ends within `marginSeconds`, so that
 * every view that follows gets URLs signed in the same window.
 */
export async function waitForFreshSigningWindow(
  stack: TestStack,
  marginSeconds: number,
): Promise<void> {
  const { signer, config } = stack.runtime;
  const windowEndMs = (signer.windowStart() + config.signedUrl.windowSeconds) * 1000;
  const remainingMs = windowEndMs - Date.now();
  if (remainingMs < marginSeconds * 1000) {
    await new Promise((resolve) => setTimeout(resolve, remainingMs + 1000));
  }
}
