import { launchChromium, NetworkRecorder } from './chromium';
import { ADMIN_PASSWORD, startTestStack, type TestStack } from '../helpers/stack';
import { makeImage } from '../helpers/images';

jest.setTimeout(120_000);
let stack: TestStack;
afterAll(async () => { await stack?.stop(); });

test('explore', async () => {
  stack = await startTestStack();
  const b = await launchChromium();
  const { page, context } = b;
  const rec = await NetworkRecorder.attach(context, page);
  await page.goto(stack.url + '/login');
  await page.getByLabel('Username').fill('admin');
  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(stack.url + '/');
  await page.goto(stack.url + '/admin/upload');
  await page.setInputFiles('#files', [
    { name: 'a.png', mimeType: 'image/png', buffer: await makeImage('png', 300, 200, '#f00') },
    { name: 'b.jpg', mimeType: 'image/jpeg', buffer: await makeImage('jpeg', 300, 200, '#0f0') },
  ]);
  rec.clear();
  await page.getByRole('button', { name: 'Upload' }).click();
  await page.waitForURL(/\?uploaded=2$/);
  await page.waitForFunction(() => Array.from(document.images).every((i) => i.complete));
  await rec.settle();
  const dump = (label: string) => console.log(label, '\n' + rec.exchanges.map(e => [e.resourceType, e.url.slice(0,90), e.status, 'disk=' + e.fromDiskCache, 'mem=' + e.servedFromCache, 'bytes=' + e.encodedDataLength, e.failure ?? ''].join(' ')).join('\n'));
  dump('FIRST');
  for (const [label, go] of [['NAV', () => page.goto(stack.url + '/')], ['RELOAD', () => page.reload()], ['SAMEURL', () => page.goto(stack.url + '/')], ['CLICK', () => page.getByRole('link', { name: 'Gallery' }).click()]] as const) {
    rec.clear();
    await go();
    await page.waitForLoadState('load');
    await page.waitForFunction(() => Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0));
    await rec.settle();
    dump(label);
  }
  const cdp = await context.newCDPSession(page);
  rec.clear();
  await cdp.send('Page.reload', { ignoreCache: true });
  await page.waitForLoadState('load');
  await page.waitForFunction(() => Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0));
  await rec.settle();
  dump('HARD');
  const page2 = await context.newPage();
  const rec2 = await NetworkRecorder.attach(context, page2);
  await page2.goto(stack.url + '/');
  await page2.waitForFunction(() => Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0));
  await rec2.settle();
  console.log('NEWTAB\n' + rec2.exchanges.map(e => [e.resourceType, e.url.slice(0,60), e.status, 'disk=' + e.fromDiskCache, 'mem=' + e.servedFromCache, 'bytes=' + e.encodedDataLength].join(' ')).join('\n'));
  await b.close();
  // incognito-like context
  const { chromium } = await import('playwright-core');
  const { CHROMIUM_ARGS } = await import('./chromium');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  const ctx = await browser.newContext();
  const p3 = await ctx.newPage();
  const rec3 = await NetworkRecorder.attach(ctx, p3);
  await p3.goto(stack.url + '/login');
  await p3.getByLabel('Username').fill('admin');
  await p3.getByLabel('Password').fill(ADMIN_PASSWORD);
  await p3.getByRole('button', { name: 'Sign in' }).click();
  await p3.waitForURL(stack.url + '/');
  await p3.waitForFunction(() => Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0));
  await rec3.settle();
  for (const label of ['INCOG1', 'INCOG2']) {
    console.log(label + '\n' + rec3.exchanges.map(e => [e.resourceType, e.url.slice(0,60), e.status, 'disk=' + e.fromDiskCache, 'mem=' + e.servedFromCache, 'bytes=' + e.encodedDataLength].join(' ')).join('\n'));
    rec3.clear();
    await p3.goto(stack.url + '/?x=1');
    await p3.waitForFunction(() => Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0));
    await rec3.settle();
  }
  await browser.close();
});
