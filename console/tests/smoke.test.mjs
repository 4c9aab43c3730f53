// The default CI run's browser check: the console loads from the server, the map draws
// the demo city, and nothing goes wrong in the page (no console errors, no failed or
// outside requests).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openPage, rendered, shot, serverAndBrowser } from './harness.mjs';

const env = serverAndBrowser({ demo: true });

test('the console loads, draws the demo city and reports no errors', async () => {
  const { server, browser } = env;
  const { page, problems, loadMs } = await openPage(browser, `${server.url}/`);
  // The map drew the demo district's entities (rendered, not merely loaded).
  await page.waitForFunction(() => window.citybrainMap?.loaded() && window.citybrainMap.queryRenderedFeatures({ layers: ['points'] }).length > 50, null, { timeout: 20_000 });
  const drawn = await rendered(page, ['points']);
  assert.ok(drawn > 50, `only ${drawn} points drawn`);
  // The KPI panel and the entity list show the same city.
  const open = await page.textContent('[data-kpi=open-incidents] .kpi-value');
  assert.match(open ?? '', /^\d+$/);
  await page.locator('#entity-list tbody tr').first().waitFor({ timeout: 5_000 });
  // Every view opens.
  for (const v of ['incidents', 'rules', 'ingest', 'governance', 'map']) {
    await page.click(`nav a[href="#/${v}"]`);
    await page.waitForTimeout(300);
  }
  await shot(page, 'smoke-map');
  console.log(JSON.stringify({ test: 'smoke', firstLoadMs: loadMs, pointsDrawn: drawn }));
  assert.deepEqual(problems, []);
});
