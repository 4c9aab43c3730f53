// 10,000 entities on the map (heavy suite): first load, and frame times while 500
// entities a second change and the map pans. Prints figures; asserts only that the
// page keeps up (every entity drawn, no errors): timings are a benchmark's to report.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openPage, serverAndBrowser } from './harness.mjs';

const N = 10_000;
const env = serverAndBrowser({ demo: false }, async (server) => {
  const batch = [];
  for (let i = 0; i < N; i++) {
    batch.push({
      id: `urn:ngsi-ld:TrafficFlowObserved:scale-${i}`,
      type: 'TrafficFlowObserved',
      averageVehicleSpeed: { type: 'Property', value: (i * 7) % 80 },
      location: { type: 'GeoProperty', value: { type: 'Point', coordinates: [120.0 + (i % 100) * 0.003, 30.15 + Math.floor(i / 100) * 0.002] } },
    });
    if (batch.length === 1000) {
      const r = await server.api('POST', '/ngsi-ld/v1/entityOperations/upsert', batch.splice(0));
      assert.ok(r.status === 201 || r.status === 204, `upsert: ${r.status}`);
    }
  }
});

const stats = (xs) => ({ p50: +pct(xs, 50).toFixed(1), p95: +pct(xs, 95).toFixed(1), p99: +pct(xs, 99).toFixed(1), over50ms: xs.filter((x) => x > 50).length, frames: xs.length });
const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

test('10,000 entities stay smooth under live changes', async () => {
  const { server, browser } = env;
  const { page, problems, loadMs } = await openPage(browser, `${server.url}/`);
  await page.waitForFunction((n) => window.citybrainMap.querySourceFeatures('points').length >= n * 0.99 || window.citybrainMap.queryRenderedFeatures({ layers: ['points', 'points-far'] }).length >= n * 0.99, N, { timeout: 60_000 });
  const idle = await page.evaluate(() => window.citybrainFrames(3000));
  // Live changes: 500 entities a second through the API.
  let written = 0;
  const write = async (seconds) => {
    let k = 0;
    for (let s = 0; s < seconds; s++) {
      const t0 = Date.now();
      const batch = [];
      for (let j = 0; j < 500; j++, k++) {
        batch.push({ id: `urn:ngsi-ld:TrafficFlowObserved:scale-${(k * 7919) % N}`, type: 'TrafficFlowObserved', averageVehicleSpeed: { type: 'Property', value: (k * 13) % 80 } });
      }
      await server.api('POST', '/ngsi-ld/v1/entityOperations/update', batch);
      written += batch.length;
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - t0))));
    }
  };
  const pan = () =>
    page.evaluate(() => {
      let dx = 4;
      window.__pan = setInterval(() => window.citybrainMap.panBy([dx, 0], { animate: false }), 16);
      setTimeout(() => (dx = -4), 2500);
    });
  const stopPan = () => page.evaluate(() => clearInterval(window.__pan));
  // Baseline: panning the same map with the entity layers hidden (what the renderer
  // costs here without them: there is no GPU, WebGL runs in SwiftShader).
  const layers = ['points', 'points-far'];
  const visibility = (v) => page.evaluate(([ls, v]) => ls.forEach((l) => window.citybrainMap.setLayoutProperty(l, 'visibility', v)), [layers, v]);
  await visibility('none');
  await pan();
  const baseline = await page.evaluate(() => window.citybrainFrames(5000));
  await stopPan();
  await visibility('visible');
  // Panning alone, changes alone, both.
  await pan();
  const panning = await page.evaluate(() => window.citybrainFrames(5000));
  await stopPan();
  const [updating] = await Promise.all([page.evaluate(() => window.citybrainFrames(5000)), write(5)]);
  await pan();
  const [busy] = await Promise.all([page.evaluate(() => window.citybrainFrames(5000)), write(5)]);
  await stopPan();
  const drawMs = await page.evaluate(() => window.citybrainDrawMs.slice());
  const notified = await page.evaluate(() => window.citybrainFeed?.notifications ?? null);
  const figures = {
    test: 'scale',
    entities: N,
    firstLoadMs: loadMs,
    idleFrameMs: { p50: +pct(idle, 50).toFixed(1), p95: +pct(idle, 95).toFixed(1), p99: +pct(idle, 99).toFixed(1) },
    panningWithoutEntitiesFrameMs: stats(baseline),
    panningFrameMs: stats(panning),
    updatingFrameMs: stats(updating),
    panningAndUpdatingFrameMs: stats(busy),
    mapRedrawMs: { p50: +pct(drawMs, 50).toFixed(1), p95: +pct(drawMs, 95).toFixed(1), count: drawMs.length },
    changesWrittenPerS: Math.round(written / 10),
    notificationsReceived: notified,
  };
  console.log(JSON.stringify(figures));
  assert.deepEqual(problems, []);
});
