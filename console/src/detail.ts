// Entity detail: every attribute as stored, and a time-series chart from the temporal
// API, with the forecast band where a TrafficFlowForecast refers to the entity.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { get, queryAll } from './api';
import { KIND_BY_TYPE, val } from './classify';
import { clear, h } from './dom';
import { fmtNum, fmtTime, t } from './i18n';
import { replay } from './replay';

const HORIZONS = [5, 15, 30, 60];

function shown(v: any): string {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return fmtNum(v, 3);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export async function renderDetail(root: HTMLElement, id: string, onClose: () => void): Promise<void> {
  clear(root);
  root.append(h('p', {}, t('Loading…')));
  let e: any;
  try {
    e = await get(`/ngsi-ld/v1/entities/${encodeURIComponent(id)}`);
  } catch (err) {
    clear(root);
    root.append(h('p', { class: 'error' }, String(err)));
    return;
  }
  const kind = KIND_BY_TYPE.get(e.type);
  const numeric = Object.entries(e)
    .filter(([, a]: [string, any]) => a && a.type === 'Property' && typeof a.value === 'number')
    .map(([k]) => k);
  clear(root);
  const select = h('select', { id: 'chart-attr' }, ...numeric.map((n) => h('option', { value: n, selected: n === kind?.main }, n)));
  const chart = h('div', { class: 'chart', role: 'img', 'aria-label': t('Time-series chart') });
  const summary = h('p', { class: 'chart-summary', 'aria-live': 'polite' });
  root.append(
    h(
      'div',
      { class: 'detail-head' },
      h('h2', { id: 'detail-title', tabindex: '-1' }, String(val(e.name) ?? e.id.split(':').pop())),
      h('button', { type: 'button', class: 'secondary', onclick: onClose }, t('Close')),
    ),
    h('p', { class: 'muted' }, `${e.type} · ${e.id}`),
    kind ? h('p', {}, kind.describe(Object.fromEntries(Object.entries(e).map(([k, a]: [string, any]) => [k, a?.value ?? a?.object ?? a])))) : '',
    h(
      'table',
      { class: 'attrs' },
      h('caption', {}, t('Attributes')),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('Attribute')), h('th', { scope: 'col' }, t('Value')), h('th', { scope: 'col' }, t('Observed')))),
      h(
        'tbody',
        {},
        ...Object.entries(e)
          .filter(([k]) => k !== 'id' && k !== 'type' && k !== '@context')
          .map(([k, a]: [string, any]) =>
            h(
              'tr',
              {},
              h('th', { scope: 'row' }, k),
              h('td', {}, shown(a?.value ?? a?.object ?? a?.languageMap ?? a?.vocab ?? a), a?.unitCode ? ` ${a.unitCode}` : ''),
              h('td', {}, a?.observedAt ? fmtTime(a.observedAt) : '—'),
            ),
          ),
      ),
    ),
    numeric.length
      ? h('div', { class: 'chart-box' }, h('label', { for: 'chart-attr' }, t('Chart')), select, chart, summary)
      : h('p', { class: 'muted' }, t('No numeric attribute to chart.')),
  );
  (root.querySelector('#detail-title') as HTMLElement | null)?.focus();
  const draw = () => void drawChart(chart, summary, e.id, e.type, select.value);
  select.addEventListener('change', draw);
  if (numeric.length) draw();
}

async function drawChart(el: HTMLElement, summary: HTMLElement, id: string, type: string, attr: string): Promise<void> {
  const end = replay.active ? replay.to : Date.now();
  const start = end - 6 * 3600_000;
  // Per-minute means: at most 360 points however often the sensor reports (raw
  // instances are capped per answer; aggregates are not).
  const q = new URLSearchParams({
    attrs: attr,
    timerel: 'between',
    timeAt: new Date(start).toISOString(),
    endTimeAt: new Date(end + 60_000).toISOString(),
    format: 'aggregatedValues',
    aggrMethods: 'avg',
    aggrPeriodDuration: 'PT1M',
  });
  const hist = await get(`/ngsi-ld/v1/temporal/entities/${encodeURIComponent(id)}?${q}`).catch(() => null);
  const a = hist?.[attr];
  const one = Array.isArray(a) ? a[0] : a;
  const pts: [number, number][] = (one?.avg ?? [])
    .map((p: any) => [Date.parse(p[1]) / 1000, p[0]] as [number, number])
    .filter((p: [number, number]) => typeof p[1] === 'number');
  // Forecast band: the forecast entity that refers to this one, for its speeds.
  let fc: { x: number; mid: number; lo: number; hi: number }[] = [];
  if (type === 'TrafficFlowObserved' && attr === 'averageVehicleSpeed') {
    // Normalized: the forecasts' `observedAt` is when they were issued.
    const f = await queryAll({ type: 'TrafficFlowForecast', q: `refTrafficFlowObserved=="${id}"`, format: 'normalized' }).catch(() => []);
    const x = f[0];
    if (x) {
      const base = (Date.parse(String(x.speedIn5min?.observedAt ?? '')) || end) / 1000;
      fc = HORIZONS.filter((m) => typeof val(x[`speedIn${m}min`]) === 'number').map((m) => ({
        x: base + m * 60,
        mid: val(x[`speedIn${m}min`]),
        lo: val(x[`speedIn${m}minLower`]) ?? val(x[`speedIn${m}min`]),
        hi: val(x[`speedIn${m}minUpper`]) ?? val(x[`speedIn${m}min`]),
      }));
    }
  }
  clear(el);
  const xs = [...pts.map((p) => p[0]), ...fc.map((f) => f.x)];
  const ys = [...pts.map((p) => p[1]), ...fc.map(() => null)];
  const fmid = [...pts.map(() => null), ...fc.map((f) => f.mid)];
  const flo = [...pts.map(() => null), ...fc.map((f) => f.lo)];
  const fhi = [...pts.map(() => null), ...fc.map((f) => f.hi)];
  if (xs.length === 0) {
    summary.textContent = t('No history in the last 6 hours.');
    return;
  }
  const last = pts[pts.length - 1];
  summary.textContent =
    t('{n} minutes with readings in the last 6 hours (per-minute means); the last {v} at {at}.', { n: pts.length, v: last ? fmtNum(last[1], 2) : '—', at: last ? fmtTime(last[0] * 1000) : '—' }) +
    (fc.length ? ' ' + t('Forecast in {m} min: {v} ({lo}–{hi}).', { m: 15, v: fmtNum(fc[1]?.mid ?? fc[0].mid, 1), lo: fmtNum(fc[1]?.lo ?? fc[0].lo, 1), hi: fmtNum(fc[1]?.hi ?? fc[0].hi, 1) }) : '');
  const series: uPlot.Series[] = [{}, { label: attr, stroke: '#0072B2', width: 2, spanGaps: true }];
  const data: uPlot.AlignedData = [xs, ys as any];
  const bands: uPlot.Band[] = [];
  if (fc.length) {
    series.push({ label: t('forecast'), stroke: '#D55E00', width: 2, dash: [6, 4], spanGaps: true });
    series.push({ label: t('upper'), stroke: 'rgba(213,94,0,0.4)', spanGaps: true });
    series.push({ label: t('lower'), stroke: 'rgba(213,94,0,0.4)', spanGaps: true });
    data.push(fmid as any, fhi as any, flo as any);
    bands.push({ series: [3, 4], fill: 'rgba(213,94,0,0.15)' });
  }
  new uPlot({ width: Math.max(280, el.clientWidth || 320), height: 200, series, bands, scales: { x: { time: true } }, legend: { show: true } }, data, el);
}
