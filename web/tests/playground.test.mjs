// The playground (/playground/): GraphiQL loads from the gateway alone, takes the API key from
// its key bar, runs a query over HTTP and a subscription over the websocket.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  DEV_KEY,
  eventually,
  fixture,
  hasEventSubscription,
  NO_SUBSCRIPTIONS,
  openBrowser,
  postWebhook,
  startGateway,
} from './harness.mjs';

let gateway;
let browser;
let page;

before(async () => {
  gateway = await startGateway();
  browser = await openBrowser();
  page = await browser.newPage();
});

after(async () => {
  await browser?.close();
  await gateway?.stop();
});

const responseText = () => page.locator('.graphiql-response').innerText();

test('the playground loads from the gateway, takes the key and runs a query', async () => {
  const answer = await page.goto(`${gateway.url}/playground`);
  assert.equal(answer.status(), 200);
  assert.equal(new URL(page.url()).pathname, '/playground/', '/playground redirects to /playground/');
  await page.locator('.graphiql-container').waitFor();

  await page.locator('input[name="api-key"]').fill(DEV_KEY);
  await page.locator('button', { hasText: 'Use key' }).click();
  await page.locator('[data-testid="key-state"]', { hasText: 'key set' }).waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('carebridge.apiKey')), DEV_KEY);

  // The starter tabs, named after their operations.
  for (const name of ['Overview', 'TodaysQueue', 'AppointmentsOfTheDay', 'PatientTimeline', 'SendAlert', 'LiveEvents']) {
    await page.locator('.graphiql-tab', { hasText: name }).first().waitFor();
  }

  await page.locator('.graphiql-tab', { hasText: 'Overview' }).first().click();
  await page.locator('.graphiql-tab-active', { hasText: 'Overview' }).waitFor();
  await page.locator('.graphiql-execute-button').click();
  await eventually('the Overview query result', async () => (await responseText()).includes('chup-dev'), 15_000);
  const text = await responseText();
  assert.match(text, /"sources"/);
  assert.doesNotMatch(text, /UNAUTHENTICATED/);
  await browser.screenshot(page, 'playground-query');
});

test('the playground runs a live events subscription and receives a webhook\'s event', async (t) => {
  if (!(await hasEventSubscription(gateway))) return t.skip(NO_SUBSCRIPTIONS);
  const sockets = [];
  page.on('websocket', (socket) => {
    const frames = [];
    socket.on('framesent', (frame) => frames.push(String(frame.payload)));
    sockets.push(frames);
  });
  await page.locator('.graphiql-tab', { hasText: 'LiveEvents' }).first().click();
  await page.locator('.graphiql-tab-active', { hasText: 'LiveEvents' }).waitFor();
  await page.locator('.graphiql-query-editor', { hasText: 'subscription LiveEvents' }).waitFor();
  // GraphiQL re-derives the operation name from the editor a moment after a tab switch; a click
  // before that runs the previous tab's operation name over HTTP ("Unknown operation"). Like a
  // user, click again until the subscription is running: the key went out in connection_init
  // and it subscribed.
  const subscribed = () =>
    sockets.some(
      (frames) =>
        frames.some((f) => f.includes('connection_init') && f.includes(`Bearer ${DEV_KEY}`)) &&
        frames.some((f) => f.includes('"subscribe"') || f.includes('"start"')),
    );
  await eventually('connection_init with the key, then subscribe', async () => {
    if (!sockets.length) await page.locator('.graphiql-execute-button').click();
    await new Promise((resolve) => setTimeout(resolve, 500));
    return subscribed();
  }, 15_000);

  const posted = await postWebhook(gateway, 'chup', fixture('chup/live_queue_created.json'));
  assert.equal(posted.status, 200, posted.body);
  await eventually('the QUEUE_ENTRY_CREATED event in the response pane', async () =>
    (await responseText()).includes('QUEUE_ENTRY_CREATED'),
  10_000);
  await browser.screenshot(page, 'playground-subscription');
});

test('the playground asked nothing of any host but 127.0.0.1', () => {
  assert.deepEqual(browser.outside, []);
  const csp = browser.problems.filter((p) => /Content Security Policy/i.test(p));
  assert.deepEqual(csp, [], 'no Content-Security-Policy violations');
});
