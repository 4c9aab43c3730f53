// The console with authentication on (heavy suite): signing in with an API key, what a
// signed-in user may see, and the audit log verified in the browser — its checkpoint's
// signature, then, on a later visit, a consistency proof from the checkpoint this
// browser verified before.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { axe, openPage, serverAndBrowser } from './harness.mjs';

const env = serverAndBrowser({ demo: true, auth: true });

test('an administrator signs in and the audit log verifies in the browser', async () => {
  const { server, browser } = env;
  assert.match(server.adminKey ?? '', /\S{20,}/);
  const { page, context } = await openPage(browser, `${server.url}/`);
  // Anonymous callers are asked to sign in (the sign-in dialog opens by itself).
  await page.waitForSelector('dialog[open] #key');
  await page.fill('#key', server.adminKey);
  await page.click('dialog[open] button[type=submit]');
  await page.waitForSelector('body[data-ready=true]', { state: 'attached', timeout: 30_000 });
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  await page.waitForFunction(() => window.citybrainMap.queryRenderedFeatures({ layers: ['points', 'points-far'] }).length > 50, null, { timeout: 20_000 });
  // Governance: the checkpoint's signature verifies; the key is pinned.
  await page.click('nav a[href="#/governance"]');
  await page.waitForSelector('#audit-status.ok, #audit-status.error', { timeout: 30_000 });
  const first = await page.textContent('#audit-status');
  assert.match(first ?? '', /Verified/, first ?? '');
  assert.deepEqual(await axe(page, 'gov-01-audit'), []);
  // More audited actions, a new checkpoint, a second look: consistency is proven.
  for (let i = 0; i < 5; i++) await server.api('GET', '/platform/v1/rules');
  const size0 = (await server.api('GET', '/platform/v1/audit')).body.size;
  for (let tries = 0; tries < 50; tries++) {
    const a = await server.api('GET', '/platform/v1/audit');
    if (a.body.checkpoint && Number(a.body.checkpoint.split('\n')[1]) > Number(first?.match(/of (\d+) entries/)?.[1] ?? size0)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  await page.click('nav a[href="#/map"]');
  await page.click('nav a[href="#/governance"]');
  await page.waitForSelector('#audit-status.ok, #audit-status.error', { timeout: 30_000 });
  const second = await page.textContent('#audit-status');
  assert.match(second ?? '', /Verified.*(extends the \d+ entries|unchanged)/, second ?? '');
  // A log that is not what this browser saw is caught: pretend it saw another root.
  await page.evaluate(() => {
    const seen = JSON.parse(localStorage.getItem('citybrain.audit.checkpoint'));
    seen.root = btoa(String.fromCharCode(...new Uint8Array(32).fill(7)));
    seen.size = Math.max(1, seen.size - 1);
    localStorage.setItem('citybrain.audit.checkpoint', JSON.stringify(seen));
  });
  await page.click('nav a[href="#/map"]');
  await page.click('nav a[href="#/governance"]');
  await page.waitForSelector('#audit-status.ok, #audit-status.error', { timeout: 30_000 });
  assert.match((await page.textContent('#audit-status')) ?? '', /Not verified/);
  await context.close();
});
