// Writes docs/screenshot-gallery.png: the gallery of a fresh s3gate with eight uploaded images.
// Jest's default testMatch skips this file, so it stays out of `npm test`. Run it on its own,
// with a configuration that matches only this file:
//   npx jest --config '{"preset":"ts-jest","setupFiles":["<rootDir>/test/setup-env.ts"],"testMatch":["<rootDir>/test/browser/take-screenshot.ts"]}'
import fs from 'node:fs';
import path from 'node:path';
import { ADMIN_PASSWORD, startTestStack } from '../helpers/stack';
import { launchChromium } from './chromium';
import {
  GALLERY_FIXTURES,
  renderFixture,
  signIn,
  uploadThroughForm,
  waitForGalleryImages,
} from './gallery-page';

const SCREENSHOT_PATH = path.join(__dirname, '..', '..', 'docs', 'screenshot-gallery.png');
const SCREENSHOT_TIMEOUT_MS = 90_000;

test(
  'writes docs/screenshot-gallery.png',
  async () => {
    const stack = await startTestStack();
    try {
      // At 1180 px the grid has four columns, so the eight images fill two rows and each
      // caption has room for its file name.
      const browser = await launchChromium({ width: 1180, height: 720 });
      try {
        await signIn(browser.page, stack.url, 'admin', ADMIN_PASSWORD);
        await uploadThroughForm(
          browser.page,
          stack.url,
          await Promise.all(GALLERY_FIXTURES.map(renderFixture)),
        );

        // Without the "Uploaded 8 images." notice, the page looks as it does on a later visit.
        await browser.page.goto(`${stack.url}/`);
        const images = await waitForGalleryImages(browser.page);
        const undecoded = images.filter((image) => image.naturalWidth === 0);
        if (undecoded.length > 0) {
          throw new Error(
            `images did not decode: ${undecoded.map((image) => image.alt).join(', ')}`,
          );
        }

        await browser.page.screenshot({ path: SCREENSHOT_PATH, fullPage: true });
      } finally {
        await browser.close();
      }
    } finally {
      await stack.stop();
      fs.rmSync(stack.dataDir, { recursive: true, force: true });
    }
  },
  SCREENSHOT_TIMEOUT_MS,
);
