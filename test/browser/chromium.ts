import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type CDPSession, type Page } from 'playwright-core';

/** Debian's `chromium` package. playwright-core ships no browser, so the tests use the system one. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/**
 * Flags for headless Chromium without a sandbox or GPU. The last four switch off first-run tasks,
 * background requests, component updates and sync, which would otherwise try to reach Google.
 */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const LAUNCH_TIMEOUT_MS = 30_000;

export function isChromiumInstalled(): boolean {
  try {
    fs.accessSync(CHROMIUM_PATH, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Whether the tests run in CI, where a missing browser must fail the run instead of skipping. */
export function isCi(): boolean {
  const value = process.env.CI;
  return value !== undefined && value !== '' && value !== '0' && value !== 'false';
}

export interface BrowserSession {
  context: BrowserContext;
  page: Page;
  /** Close the browser and delete its profile folder. */
  close(): Promise<void>;
}

/**
 * Launch headless Chromium with a new profile in a temp folder and open one page.
 *
 * A persistent context is a normal profile with an HTTP cache on disk, which is what a user has.
 * `browser.newContext()` gives an incognito-like context whose HTTP cache lives in memory. Chromium
 * 156 keeps the cache between navigations in both, and reports hits as `fromDiskCache` in both.
 */
export async function launchChromium(
  viewport = { width: 1280, height: 1600 },
): Promise<BrowserSession> {
  if (!isChromiumInstalled()) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}. Install it with \`apt-get install -y chromium\`.`,
    );
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 's3gate-chromium-'));
  try {
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      args: CHROMIUM_ARGS,
      headless: true,
      viewport,
      timeout: LAUNCH_TIMEOUT_MS,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    return {
      context,
      page,
      close: async () => {
        await context.close();
        fs.rmSync(userDataDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    fs.rmSync(userDataDir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * One hop of a request as DevTools reports it. A request that is redirected keeps its request id
 * across hops, so a 302 and the request it leads to are two exchanges with the same `requestId`.
 */
export interface Exchange {
  requestId: string;
  url: string;
  /** CDP resource type, such as "Image" or "Document". */
  resourceType: string | undefined;
  /**
   * Status of the response that the page received. After a revalidation this is the cached 200,
   * not the 304 on the wire (Chromium 156), so a 304 shows as a 200 with `bodyBytes` 0.
   */
  status: number | undefined;
  /** Response headers with lower-case names. */
  headers: Record<string, string>;
  /** `Response.fromDiskCache`: the HTTP cache served the response (kept in memory for incognito). */
  fromDiskCache: boolean;
  /** `Network.requestServedFromCache`: the renderer's memory cache served the response. */
  servedFromCache: boolean;
  /**
   * Bytes received from the network for this hop, including headers. A redirect hop takes the
   * redirect response's `encodedDataLength`, and the last hop that of `Network.loadingFinished`.
   */
  encodedDataLength: number | undefined;
  /**
   * Bytes received from the network after the response headers: `encodedDataLength` at
   * `Network.loadingFinished` less `headerBytes`. 0 for a cache hit and for a 304, whose body
   * comes from the cache. Sums over `Network.dataReceived` are not used, because Chromium 156
   * sometimes reports 0 in them for a body that came over the network.
   */
  bodyBytes: number;
  /** `encodedDataLength` of the response at `Network.responseReceived`: the header bytes. */
  headerBytes: number | undefined;
  /** Location that a redirect hop led to. */
  redirectedTo: string | undefined;
  /** Whether the hop has ended, by a redirect, a finished load or a failure. */
  done: boolean;
  /** `errorText` of `Network.loadingFailed`. */
  failure: string | undefined;
}

/** Return whether a browser cache served the hop: the HTTP cache or the renderer's memory cache. */
export function isFromCache(exchange: Exchange): boolean {
  return exchange.fromDiskCache || exchange.servedFromCache;
}

/** The fields of a CDP `Network.Response` read here, because playwright-core does not export them. */
interface CdpResponse {
  status: number;
  headers: Record<string, string>;
  fromDiskCache?: boolean;
  encodedDataLength: number;
}

/** The fields of a CDP `Network.requestWillBeSent` event read here. */
interface RequestWillBeSentEvent {
  requestId: string;
  type?: string;
  request: { url: string };
  redirectResponse?: CdpResponse;
}

function lowerCaseHeaders(headers: Record<string, string>): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) result[name.toLowerCase()] = value;
  return result;
}

/**
 * Records the Network domain events of one page through its own CDP session, independent of
 * Playwright's session, and folds them into exchanges.
 */
export class NetworkRecorder {
  readonly exchanges: Exchange[] = [];
  private readonly lastHop = new Map<string, Exchange>();

  private constructor(session: CDPSession) {
    session.on('Network.requestWillBeSent', (event) => this.onRequestWillBeSent(event));
    session.on('Network.requestServedFromCache', (event) => {
      const exchange = this.lastHop.get(event.requestId);
      if (exchange) exchange.servedFromCache = true;
    });
    session.on('Network.responseReceived', (event) => {
      const exchange = this.lastHop.get(event.requestId);
      if (!exchange) return;
      exchange.resourceType = event.type;
      exchange.status = event.response.status;
      exchange.headers = lowerCaseHeaders(event.response.headers);
      exchange.fromDiskCache = event.response.fromDiskCache === true;
      exchange.headerBytes = event.response.encodedDataLength;
    });
    session.on('Network.loadingFinished', (event) => {
      const exchange = this.lastHop.get(event.requestId);
      if (!exchange) return;
      exchange.encodedDataLength = event.encodedDataLength;
      // A cache hit ends with 0 bytes, though its response may carry the length of the original
      // download.
      if (!isFromCache(exchange) && event.encodedDataLength > 0) {
        exchange.bodyBytes = event.encodedDataLength - (exchange.headerBytes ?? 0);
      }
      exchange.done = true;
    });
    session.on('Network.loadingFailed', (event) => {
      const exchange = this.lastHop.get(event.requestId);
      if (!exchange) return;
      exchange.failure = event.errorText;
      exchange.done = true;
    });
  }

  /** Attach a new CDP session to `page` and start recording. */
  static async attach(context: BrowserContext, page: Page): Promise<NetworkRecorder> {
    const session = await context.newCDPSession(page);
    const recorder = new NetworkRecorder(session);
    await session.send('Network.enable');
    return recorder;
  }

  private onRequestWillBeSent(event: RequestWillBeSentEvent): void {
    // A redirect arrives as the next hop's requestWillBeSent, carrying the previous hop's response.
    const previous = this.lastHop.get(event.requestId);
    if (previous && event.redirectResponse) {
      previous.status = event.redirectResponse.status;
      previous.headers = lowerCaseHeaders(event.redirectResponse.headers);
      previous.fromDiskCache = event.redirectResponse.fromDiskCache === true;
      previous.encodedDataLength = event.redirectResponse.encodedDataLength;
      previous.redirectedTo = event.request.url;
      previous.done = true;
    }

    const exchange: Exchange = {
      requestId: event.requestId,
      url: event.request.url,
      resourceType: event.type,
      status: undefined,
      headers: {},
      fromDiskCache: false,
      servedFromCache: false,
      encodedDataLength: undefined,
      bodyBytes: 0,
      headerBytes: undefined,
      redirectedTo: undefined,
      done: false,
      failure: undefined,
    };
    this.exchanges.push(exchange);
    this.lastHop.set(event.requestId, exchange);
  }

  /** Forget everything recorded so far, so the next page view starts from an empty list. */
  clear(): void {
    this.exchanges.length = 0;
    this.lastHop.clear();
  }

  /**
   * Wait until each of `urls` has a recorded exchange and every recorded exchange has ended.
   * Throws, listing the missing and open URLs, after `timeoutMs`. The events reach this session
   * apart from the page, so an image can be complete in the page before its events arrive.
   */
  async settle(timeoutMs = 10_000, urls: readonly string[] = []): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const recorded = new Set(this.exchanges.map((exchange) => exchange.url));
      const missing = urls.filter((url) => !recorded.has(url));
      const open = this.exchanges.filter((exchange) => !exchange.done);
      if (missing.length === 0 && open.length === 0) return;
      if (Date.now() > deadline) {
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for network requests to end: ` +
            `open ${open.map((e) => e.url).join(', ') || 'none'}; ` +
            `never requested ${missing.join(', ') || 'none'}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/**
 * `describe` where the browser tests can run, else `describe.skip` with a warning. In CI a missing
 * browser fails the run instead, because launchChromium throws with the install command.
 */
export function browserDescribe(): jest.Describe {
  if (isChromiumInstalled() || isCi()) return describe;
  console.warn(
    `Skipping the browser tests: no Chromium at ${CHROMIUM_PATH} (apt-get install -y chromium).`,
  );
  return describe.skip;
}
