// Time travel over histories longer than one temporal answer (heavy suite): the
// server cuts each answer at 3 instances per series (CITYBRAIN_HISTORY__MAX_INSTANCES)
// and the console must continue from each 206's Content-Range to replay the whole
// hour: an ambulance's twelve positions, the last one where the slider ends.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openPage, serverAndBrowser } from './harness.mjs';

const ID = 'urn:ngsi-ld:Vehicle:replay-ambulance';
const env = serverAndBrowser({ demo: false, env: { CITYBRAIN_HISTORY__MAX_INSTANCES: '3' } });

const at = (minutesAgo) => new Date(Date.now() - minutesAgo * 60_000).toISOString();
const position = (i) => [120.1 + i * 0.001, 30.2];

test('a replay reads a history longer than one answer', async () => {
  const { server, browser } = env;
  const created = await server.api('POST', '/ngsi-ld/v1/entities', {
    id: ID,
    type: 'Vehicle',
    responseStatus: { type: 'Property', value: 'available', observedAt: at(50) },
    location: { type: 'GeoProperty', value: { type: 'Point', coordinates: position(0) }, observedAt: at(50) },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  // Eleven more positions, one every four minutes, the last three minutes ago.
  for (let i = 1; i <= 11; i++) {
    const r = await server.api('PATCH', `/ngsi-ld/v1/entities/${encodeURIComponent(ID)}/attrs`, {
      location: { type: 'GeoProperty', value: { type: 'Point', coordinates: position(i) }, observedAt: at(50 - i * 4.3) },
    });
    assert.equal(r.status, 204, JSON.stringify(r.body));
  }
  // The server does cut: a plain temporal query answers 206 with 3 instances.
  const cut = await fetch(`${server.url}/ngsi-ld/v1/temporal/entities/${encodeURIComponent(ID)}?attrs=location&timerel=between&timeAt=${at(60)}&endTimeAt=${at(0)}&format=temporalValues`);
  assert.equal(cut.status, 206);
  assert.equal((await cut.json()).location.values.length, 3);

  const { page, problems } = await openPage(browser, `${server.url}/`);
  await page.click('#replay-start');
  await page.waitForSelector('#replay-slider', { timeout: 30_000 });
  const shownAt = async (ms) => {
    await page.evaluate((v) => {
      const s = document.getElementById('replay-slider');
      s.value = String(v);
      s.dispatchEvent(new Event('input'));
    }, ms);
    return page.evaluate(async (id) => {
      // The map redraws at most twice a second.
      await new Promise((r) => setTimeout(r, 700));
      const f = window.citybrainMap.querySourceFeatures('points').find((f) => f.properties.id === id);
      return f ? f.geometry.coordinates : null;
    }, ID);
  };
  const end = await page.evaluate(() => Number(document.getElementById('replay-slider').max));
  const last = await shownAt(end);
  assert.ok(last, 'the ambulance is on the map at the end of the window');
  assert.ok(Math.abs(last[0] - position(11)[0]) < 1e-6, `at the end: ${last}`);
  // Half way through: a position from the middle of the history, not the first three.
  const middle = await shownAt(Date.parse(at(50 - 6 * 4.3)) + 30_000);
  assert.ok(Math.abs(middle[0] - position(6)[0]) < 1e-6, `half way: ${middle}`);
  // (206 answers are partial content, not failures.)
  assert.deepEqual(problems, []);
});
