// Shared by the browser tests: start the real gateway binary on a free loopback port with its
// own SQLite file (no config file: development mode, key `carebridge-dev-key`, sources
// chup-dev / vcita-dev / vsee-dev / timetap-dev), post vendor webhooks the way each vendor
// does, and drive headless Debian Chromium through playwright-core.
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const TARGET = process.env.CARGO_TARGET_DIR
  ? resolve(REPO, process.env.CARGO_TARGET_DIR)
  : join(REPO, 'target');
export const SCREENSHOTS = join(TARGET, 'screenshots');
export const DEV_KEY = 'carebridge-dev-key';
const CHUP_SECRET = 'dev-chup-secret';
const TOKENS = { vcita: 'dev-vcita-token', vsee: 'dev-vsee-token', timetap: 'dev-timetap-token' };

const GATEWAY_BIN = process.env.CAREBRIDGE_BIN ?? join(TARGET, 'debug', 'carebridge');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

async function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/**
 * Starts `carebridge serve`; resolves once `/readyz` answers. `stop()` ends it.
 * `options.port` / `options.dir` reuse a port and database (for a restart).
 */
export async function startGateway(options = {}) {
  if (!existsSync(GATEWAY_BIN)) {
    throw new Error(`${GATEWAY_BIN} is missing: run \`cargo build\` first (or set CAREBRIDGE_BIN)`);
  }
  const port = options.port ?? (await freePort());
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'carebridge-browser-'));
  const env = { ...process.env };
  delete env.CAREBRIDGE_CONFIG;
  env.CAREBRIDGE_LISTEN = `127.0.0.1:${port}`;
  env.DATABASE_URL = `sqlite://${dir}/x.db?mode=rwc`;
  const child = spawn(GATEWAY_BIN, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (chunk) => (log += chunk));
  child.stderr.on('data', (chunk) => (log += chunk));
  const exited = new Promise((resolveExit) => child.once('exit', resolveExit));
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; ; attempt += 1) {
    if (child.exitCode !== null) throw new Error(`gateway exited early:\n${log}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (attempt > 150) throw new Error(`gateway not ready after 30 s:\n${log}`);
    await sleep(200);
  }
  return {
    url,
    port,
    dir,
    log: () => log,
    async stop({ keepDir = false } = {}) {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      if (!keepDir && !options.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function fixture(path) {
  return JSON.parse(readFileSync(join(REPO, 'fixtures', path), 'utf8'));
}

/**
 * Posts a webhook as its vendor would. Chup: `{"payload": …, "signature": hex}` with the
 * HMAC-SHA256 of the exact payload text sent; the others: `?token=` on the URL.
 */
export async function postWebhook(gateway, vendor, body) {
  let url = `${gateway.url}/webhooks/${vendor}-dev`;
  let text;
  if (vendor === 'chup') {
    const payload = JSON.stringify(body.payload);
    const signature = createHmac('sha256', CHUP_SECRET).update(payload).digest('hex');
    text = `{"payload":${payload},"signature":"${signature}"}`;
  } else {
    url += `?token=${TOKENS[vendor]}`;
    text = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: text,
  });
  return { status: response.status, body: await response.text() };
}

/** Posts `fixtures/<vendor>/<name>.json` (as is) and insists on a 200. */
export async function postFixture(gateway, path) {
  const vendor = path.split('/')[0];
  const answer = await postWebhook(gateway, vendor, fixture(path));
  if (answer.status !== 200) throw new Error(`${path}: ${answer.status} ${answer.body}`);
  return answer;
}

export async function graphql(gateway, query, variables = {}) {
  const response = await fetch(`${gateway.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${DEV_KEY}` },
    body: JSON.stringify({ query, variables }),
  });
  return response.json();
}

/**
 * Whether the gateway serves `subscription { events }` (the live stream). Tests that need it
 * are skipped without it — but only while the committed `schema.graphql` has no subscriptions
 * either: once it declares them, a gateway without them is a failure, not a skip.
 */
export async function hasEventSubscription(gateway) {
  const answer = await graphql(gateway, '{ __schema { subscriptionType { fields { name } } } }');
  const fields = answer.data?.__schema?.subscriptionType?.fields ?? [];
  const served = fields.some((field) => field.name === 'events');
  const declared = /type Subscription\s*\{[^}]*\bevents\(/.test(
    readFileSync(join(REPO, 'schema.graphql'), 'utf8'),
  );
  if (declared && !served) {
    throw new Error('schema.graphql declares subscription { events } but the gateway does not serve it');
  }
  return served;
}

export const NO_SUBSCRIPTIONS =
  'the gateway has no `subscription { events }` yet (GraphQL subscriptions are not merged into ' +
  'this branch): skipped, runs once they are';

/**
 * Headless Debian Chromium. Every request and websocket of the page is recorded, so a test can
 * assert that none left 127.0.0.1 (Chromium's own background traffic is not the page's).
 */
export async function openBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  const outside = [];
  const problems = [];
  const watch = (page) => {
    page.on('request', (request) => {
      if (!isLocal(request.url())) outside.push(request.url());
    });
    page.on('websocket', (socket) => {
      if (!isLocal(socket.url())) outside.push(socket.url());
    });
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text());
    });
    page.on('pageerror', (error) => problems.push(String(error)));
  };
  context.on('page', watch);
  mkdirSync(SCREENSHOTS, { recursive: true });
  return {
    browser,
    context,
    /** URLs the pages asked for that are not on 127.0.0.1 (must stay empty). */
    outside,
    /** Console errors and uncaught exceptions of the pages. */
    problems,
    async newPage() {
      return context.newPage();
    },
    screenshot(page, name) {
      return page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
    },
    close: () => browser.close(),
  };
}

function isLocal(url) {
  const parsed = new URL(url);
  if (['data:', 'blob:', 'about:'].includes(parsed.protocol)) return true;
  return parsed.hostname === '127.0.0.1';
}

/** Waits until `check()` is truthy (polling), or fails with `what`. */
export async function eventually(what, check, timeoutMs = 5_000) {
  const start = Date.now();
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return Date.now() - start;
    } catch (error) {
      last = error;
    }
    if (Date.now() - start > timeoutMs) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
    }
    await sleep(50);
  }
}
