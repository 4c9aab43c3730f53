// The console in a real browser, as a duty officer uses it (heavy suite: run by
// `scripts/test-console.sh --all`, CI with CITYBRAIN_HEAVY=1): the demo city on the
// map, a detector's chart, a reading that crosses a rule, the incident arriving live,
// acknowledged and resolved, an area switched to emergency and back, the last hour
// replayed; axe-core on every view; keyboard use; both languages and large text.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { axe, openPage, rendered, shot, serverAndBrowser } from './harness.mjs';

/** Opens a view by its link and waits until it is the current one. */
async function go(page, view) {
  await page.click(`nav a[href="#/${view}"]`);
  await page.waitForSelector(`nav a[aria-current=page][href="#/${view}"]`);
  await page.waitForSelector(view === 'map' ? '#kpis' : view === 'incidents' ? '#f-status' : '.page h2');
}

const env = serverAndBrowser({ demo: true });

test('a duty officer follows an incident from a reading to its resolution', async () => {
  const { server, browser } = env;
  const { page, problems } = await openPage(browser, `${server.url}/`);
  const violations = [];
  await page.waitForFunction(() => window.citybrainMap.queryRenderedFeatures({ layers: ['points'] }).length > 50, null, { timeout: 20_000 });
  violations.push(...(await axe(page, 'e2e-01-map')));

  // A detector's chart, reached through the entity list.
  await page.fill('#entity-filter', 'TrafficFlowObserved:hz-000');
  await page.click('button[data-entity="urn:ngsi-ld:TrafficFlowObserved:hz-000"]');
  await page.waitForSelector('#detail .chart canvas', { timeout: 10_000 });
  assert.match((await page.textContent('#detail .chart-summary')) ?? '', /\d+ minutes with readings/);
  violations.push(...(await axe(page, 'e2e-02-detail')));

  // A reading that crosses a rule: an air-quality station well under pm25-high (75).
  const stations = await server.api('GET', '/ngsi-ld/v1/entities?type=AirQualityObserved&q=pm25%3C50&limit=1&format=keyValues');
  assert.equal(stations.status, 200);
  const station = stations.body[0].id;
  const before = Number(await page.textContent('[data-kpi=open-incidents] .kpi-value'));
  const r = await server.api('PATCH', `/ngsi-ld/v1/entities/${encodeURIComponent(station)}/attrs`, {
    pm25: { type: 'Property', value: 260, unitCode: 'GQ', observedAt: new Date().toISOString() },
  });
  assert.equal(r.status, 204);
  // It arrives live: the KPI counts it and the queue shows it, with no reload.
  await page.waitForFunction((n) => Number(document.querySelector('[data-kpi=open-incidents] .kpi-value')?.textContent) > n, before, { timeout: 15_000 });
  await go(page, 'incidents');
  const row = page.locator('tr', { hasText: station });
  await row.waitFor({ timeout: 10_000 });
  await row.locator('button.link').click();
  violations.push(...(await axe(page, 'e2e-03-incident')));
  const incidentId = await row.getAttribute('data-incident');
  // Acknowledge, work on it, resolve it, through the buttons the lifecycle offers
  // (all statuses listed: a resolved incident leaves the open queue).
  await page.selectOption('#f-status', 'all');
  for (const move of ['acknowledged', 'in_progress', 'resolved']) {
    await page.click(`button[data-move="${move}"]`);
    await page.waitForFunction(
      ([id, m]) => document.querySelector(`tr[data-incident="${id}"] .status`)?.classList.contains(`status-${m}`),
      [incidentId, move],
      { timeout: 10_000 },
    );
  }
  const stored = await server.api('GET', `/platform/v1/incidents/${encodeURIComponent(incidentId)}`);
  assert.equal(stored.body.status, 'resolved');
  assert.deepEqual(
    stored.body.history.filter((h) => h.action === 'status').map((h) => h.to),
    ['acknowledged', 'in_progress', 'resolved'],
  );
  await shot(page, 'e2e-04-resolved');

  // An area to emergency and back, confirmed with a reason.
  await go(page, 'map');
  await page.click('button[data-area="west-lake"]');
  await page.waitForSelector('dialog[open]');
  violations.push(...(await axe(page, 'e2e-05-confirm')));
  await page.fill('#dialog-reason', 'flood warning on the lake shore');
  await page.click('dialog[open] button.danger');
  await page.waitForSelector('.mode-emergency button[data-area="west-lake"]', { timeout: 10_000 });
  let mode = await server.api('GET', '/platform/v1/mode');
  assert.equal(mode.body.areas['west-lake'], 'emergency');
  assert.equal(mode.body.history.at(-1).reason, 'flood warning on the lake shore');
  await page.waitForFunction(() => window.citybrainMap.queryRenderedFeatures({ layers: ['areas-hatch'] }).length > 0, null, { timeout: 10_000 });
  await shot(page, 'e2e-06-emergency');
  await page.click('button[data-area="west-lake"]');
  await page.fill('#dialog-reason', 'water receded');
  await page.click('dialog[open] button.danger, dialog[open] button.primary');
  await page.waitForSelector('.mode-normal button[data-area="west-lake"]', { timeout: 10_000 });
  mode = await server.api('GET', '/platform/v1/mode');
  assert.equal(mode.body.areas['west-lake'] ?? 'normal', 'normal');

  // Replay the last hour: before the reading the incident did not exist; at the end
  // it is resolved.
  await page.click('#replay-start');
  await page.waitForSelector('#replay-slider', { timeout: 30_000 });
  violations.push(...(await axe(page, 'e2e-07-replay')));
  const opened = Date.parse(stored.body.openedAt);
  await page.evaluate((at) => {
    const s = document.getElementById('replay-slider');
    s.value = String(at);
    s.dispatchEvent(new Event('input'));
  }, opened - 60_000);
  await go(page, 'incidents');
  await page.selectOption('#f-status', 'all');
  assert.equal(await page.locator(`tr[data-incident="${incidentId}"]`).count(), 0, 'the incident shows before it was opened');
  await go(page, 'map');
  await page.evaluate(() => {
    const s = document.getElementById('replay-slider');
    s.value = s.max;
    s.dispatchEvent(new Event('input'));
  });
  await go(page, 'incidents');
  await page.selectOption('#f-status', 'all');
  await page.locator(`tr[data-incident="${incidentId}"] .status-resolved`).waitFor({ timeout: 5_000 });
  await shot(page, 'e2e-08-replayed');
  await go(page, 'map');
  await page.click('#replay-stop');

  // The other views.
  for (const v of ['rules', 'ingest', 'governance']) {
    await go(page, v);
    await page.waitForTimeout(800);
    violations.push(...(await axe(page, `e2e-09-${v}`)));
  }
  assert.deepEqual(violations, []);
  assert.deepEqual(problems, []);
});

test('a cross-department request is worked task by task', async () => {
  const { server, browser } = env;
  // Three departments; the road crew waits for the water company.
  const r = await server.api('POST', '/platform/v1/incidents', {
    category: 'flooding',
    title: 'Burst main on Nanshan Road',
    severity: 'high',
    location: [120.16, 30.24],
    tasks: [
      { department: 'water', title: 'Close the valve' },
      { department: 'traffic-police', title: 'Divert traffic' },
      { department: 'road-maintenance', title: 'Repair the surface', after: [0] },
    ],
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const id = r.body.id;
  const { page, problems } = await openPage(browser, `${server.url}/#/incidents`);
  await page.locator(`tr[data-incident="${id}"] button.link`).click();
  await page.locator('ol.tasks > li').first().waitFor();
  assert.match((await page.locator('ol.tasks > li').nth(2).textContent()) ?? '', /after 0/);
  // The road crew cannot start before the water company is done.
  await page.click('button[data-task="2"][data-status="in_progress"]');
  await page.waitForFunction(() => document.getElementById('notice')?.className.includes('error'));
  // The water company starts: the incident is in progress.
  await page.click('button[data-task="0"][data-status="in_progress"]');
  await page.waitForFunction((id) => document.querySelector(`tr[data-incident="${id}"] .status`)?.classList.contains('status-in_progress'), id);
  await page.click('button[data-task="0"][data-status="done"]');
  await page.waitForFunction(() => document.querySelectorAll('ol.tasks > li')[0]?.textContent?.includes('— done'));
  await page.click('button[data-task="1"][data-status="done"]');
  await page.waitForFunction(() => document.querySelectorAll('ol.tasks > li')[1]?.textContent?.includes('— done'));
  await page.click('button[data-task="2"][data-status="done"]');
  // Every task settled: the hub resolves the incident.
  // (A resolved incident leaves the open queue: list them all.)
  await page.selectOption('#f-status', 'all');
  await page.waitForFunction((id) => document.querySelector(`tr[data-incident="${id}"] .status`)?.classList.contains('status-resolved'), id, { timeout: 10_000 });
  const stored = await server.api('GET', `/platform/v1/incidents/${encodeURIComponent(id)}`);
  assert.equal(stored.body.status, 'resolved');
  assert.deepEqual(stored.body.tasks.map((t) => t.status), ['done', 'done', 'done']);
  assert.deepEqual(await axe(page, 'e2e-10-tasks'), []);
  // The one refusal was the early start, answered 409 and shown.
  assert.deepEqual(problems.filter((p) => !/HTTP 409: POST .*\/tasks\/2$/.test(p)), []);
});

test('the console is keyboard operable, bilingual and has a large-text mode', async () => {
  const { server, browser } = env;
  const { page, problems } = await openPage(browser, `${server.url}/`, { lang: 'zh' });
  const violations = [];
  assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
  assert.equal(await page.textContent('nav a[href="#/incidents"]'), '事件');
  violations.push(...(await axe(page, 'a11y-01-zh-map')));
  // Keyboard: the skip link first, then the views by Tab and Enter; focus is visible.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.className), 'skip');
  let guard = 0;
  while ((await page.evaluate(() => document.activeElement?.getAttribute('href'))) !== '#/incidents' && guard++ < 10) await page.keyboard.press('Tab');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none', 'focus is not visible');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#f-status');
  assert.equal(await page.evaluate(() => location.hash), '#/incidents');
  // Open an incident with the keyboard alone.
  await page.focus('table.incidents button.link');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.queue-detail h2');
  violations.push(...(await axe(page, 'a11y-02-zh-incident')));
  // Large text, and back to English.
  await go(page, 'map');
  await page.getByRole('button', { name: '大字模式' }).click();
  assert.equal(await page.evaluate(() => getComputedStyle(document.documentElement).fontSize), '20px');
  await page.getByRole('button', { name: 'English' }).click();
  assert.equal(await page.textContent('nav a[href="#/incidents"]'), 'Incidents');
  await page.waitForSelector('#kpis .kpi');
  violations.push(...(await axe(page, 'a11y-03-large-map')));
  assert.deepEqual(violations, []);
  assert.deepEqual(problems, []);
});
