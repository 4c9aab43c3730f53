// The KPI panel: congestion, open incidents by severity and department, SLA
// compliance, MTTA/MTTR, sensor health and data freshness, ingest rate.

import { get } from './api';
import { KIND_BY_TYPE, num, SEVERITIES, SEVERITY_COLOR, SEVERITY_LETTER, shapeSvg, val } from './classify';
import { clear, h } from './dom';
import { fmtDuration, fmtNum, t } from './i18n';
import { city, isOpen } from './state';
import { replay, shownEntities, shownIncidents } from './replay';

interface DeptReport {
  department: string;
  incidents: number;
  open: number;
  acknowledged: number;
  resolved: number;
  mttaS: number | null;
  mttrS: number | null;
  ackCompliance: number | null;
  resolveCompliance: number | null;
  breaches: number;
}

const FRESH_MS = 15 * 60_000;

export class Kpis {
  private sla: DeptReport[] = [];
  private ingest = { rate: null as number | null, last: null as { at: number; records: number } | null };
  private slaTimer: number | null = null;

  private timer: number | null = null;
  private drawn = 0;

  constructor(private root: HTMLElement) {
    city.on('entities', () => this.schedule());
    city.on('incidents', () => {
      this.render();
      this.refreshSla();
    });
    this.refreshSla();
    void this.pollIngest();
    window.setInterval(() => void this.pollIngest(), 10_000);
    this.render();
  }

  /** Renders at most once a second however fast entities change (each render reads
   * them all). */
  private schedule(): void {
    if (this.timer !== null) return;
    const wait = Math.max(0, 1000 - (performance.now() - this.drawn));
    this.timer = window.setTimeout(() => {
      this.timer = null;
      this.render();
    }, wait);
  }

  /** The SLA report after incident changes (debounced: one request per burst). */
  private refreshSla(): void {
    if (this.slaTimer !== null) return;
    this.slaTimer = window.setTimeout(async () => {
      this.slaTimer = null;
      this.sla = await get<DeptReport[]>('/platform/v1/sla/report').catch(() => []);
      this.render();
    }, 1000);
  }

  /** Records per second over the last 10 s, from the ingest sources' counters. */
  private async pollIngest(): Promise<void> {
    const sources = await get<any[]>('/ingest/sources').catch(() => null);
    if (!sources) return;
    const records = sources.reduce((a, s) => a + (s.records ?? 0), 0);
    const now = Date.now();
    if (this.ingest.last) {
      const dt = (now - this.ingest.last.at) / 1000;
      this.ingest.rate = dt > 0 ? Math.max(0, records - this.ingest.last.records) / dt : null;
    }
    this.ingest.last = { at: now, records };
    this.render();
  }

  render(): void {
    this.drawn = performance.now();
    const entities = shownEntities();
    const incidents = shownIncidents().filter((i) => isOpen(i.status));
    const at = replay.active ? replay.at : Date.now();

    // Congestion: the twin's network index where there is one; detectors otherwise.
    const network = entities.get('urn:ngsi-ld:TrafficFlowObserved:junction-network');
    const tti = num(network?.travelTimeIndex);
    let detectors = 0;
    let congested = 0;
    let speedSum = 0;
    let speedN = 0;
    let sensors = 0;
    let fresh = 0;
    let oldest = 0;
    for (const e of entities.values()) {
      const k = KIND_BY_TYPE.get(e.type);
      if (!k) continue;
      if (e.type === 'TrafficFlowObserved' && e.location) {
        detectors++;
        const s = num(e.averageVehicleSpeed);
        if (s !== undefined) {
          speedSum += s;
          speedN++;
          if (s < 15) congested++;
        }
      }
      if (e.type === 'Streetlight' || e.type === 'Vehicle') continue;
      sensors++;
      const obs = Date.parse(String(val(e.dateObserved) ?? '')) || city.seen.get(e.id) || 0;
      const age = at - obs;
      if (age <= FRESH_MS) fresh++;
      oldest = Math.max(oldest, age);
    }
    const bySeverity = new Map<string, number>();
    const byDept = new Map<string, number>();
    for (const i of incidents) {
      bySeverity.set(i.severity, (bySeverity.get(i.severity) ?? 0) + 1);
      const d = i.department ?? t('unassigned');
      byDept.set(d, (byDept.get(d) ?? 0) + 1);
    }
    // SLA across departments, weighted by incidents.
    const w = (f: (d: DeptReport) => number | null, by: (d: DeptReport) => number) => {
      let s = 0;
      let n = 0;
      for (const d of this.sla) {
        const v = f(d);
        if (v === null || v === undefined) continue;
        s += v * by(d);
        n += by(d);
      }
      return n > 0 ? s / n : null;
    };
    const ack = w((d) => d.ackCompliance, (d) => d.acknowledged || d.incidents);
    const res = w((d) => d.resolveCompliance, (d) => d.resolved || d.incidents);
    const mtta = w((d) => d.mttaS, (d) => d.acknowledged || 1);
    const mttr = w((d) => d.mttrS, (d) => d.resolved || 1);
    const pct = (x: number | null) => (x === null ? '—' : `${fmtNum(x * 100, 0)} %`);

    clear(this.root);
    const tile = (label: string, value: string, sub?: string, testid?: string) =>
      h('div', { class: 'kpi', 'data-kpi': testid }, h('span', { class: 'kpi-label' }, label), h('span', { class: 'kpi-value' }, value), sub ? h('span', { class: 'kpi-sub' }, sub) : null);
    this.root.append(
      h('h2', { class: 'panel-title' }, replay.active ? t('Key indicators (replay)') : t('Key indicators')),
      h(
        'div',
        { class: 'kpis' },
        tile(
          t('Travel-time index'),
          tti === undefined ? (speedN ? fmtNum(Math.max(1, 50 / (speedSum / speedN)), 2) : '—') : fmtNum(tti, 2),
          tti === undefined ? t('from detector speeds (50 km/h free flow)') : t('network, from the twin'),
          'congestion',
        ),
        tile(t('Congested detectors'), `${congested} / ${detectors}`, speedN ? t('mean speed {v} km/h', { v: fmtNum(speedSum / speedN, 0) }) : undefined, 'congested'),
        tile(t('Open incidents'), String(incidents.length), undefined, 'open-incidents'),
        tile(t('SLA: acknowledged in time'), pct(ack), t('MTTA {d}', { d: fmtDuration(mtta) }), 'ack'),
        tile(t('SLA: resolved in time'), pct(res), t('MTTR {d}', { d: fmtDuration(mttr) }), 'resolve'),
        tile(t('Sensors reporting'), sensors ? `${fmtNum((fresh / sensors) * 100, 0)} %` : '—', t('{fresh} of {n} in the last 15 min; oldest {age}', { fresh, n: sensors, age: fmtDuration(oldest / 1000) }), 'freshness'),
        tile(t('Ingest rate'), this.ingest.rate === null ? '—' : t('{n} records/s', { n: fmtNum(this.ingest.rate, 1) }), undefined, 'ingest'),
      ),
      h(
        'div',
        { class: 'kpi-lists' },
        h(
          'div',
          {},
          h('h3', {}, t('Open by severity')),
          h(
            'ul',
            { class: 'plain' },
            ...SEVERITIES.map((s) =>
              h('li', {}, h('span', { html: shapeSvg('bad', SEVERITY_COLOR[s], SEVERITY_LETTER[s]) }), ` ${t(s)}: ${bySeverity.get(s) ?? 0}`),
            ),
          ),
        ),
        h(
          'div',
          {},
          h('h3', {}, t('Open by department')),
          h('ul', { class: 'plain' }, ...[...byDept.entries()].sort((a, b) => b[1] - a[1]).map(([d, n]) => h('li', {}, `${d}: ${n}`))),
        ),
      ),
    );
  }
}
