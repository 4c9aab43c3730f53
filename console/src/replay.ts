// Time travel: the map, the KPIs and the incident queue as they were at any minute of
// the retained history, played back at a chosen speed. Built on the temporal API
// (per-minute averages of each kind's main attribute, and the last value before the
// window) and on each incident's own history of moves.

import { temporalAll } from './api';
import { KINDS } from './classify';
import { city, type Incident, type ModeState } from './state';

type Series = { t: number; v: any }[];

class Replay {
  active = false;
  loading = false;
  from = 0;
  to = 0;
  at = 0;
  /** Per entity, per attribute, values in time order. */
  private series = new Map<string, Map<string, Series>>();
  private cache: { at: number; entities: Map<string, any> } | null = null;

  /** Loads the window [from, to) and enters replay at its start. */
  async load(minutes: number, signal?: AbortSignal): Promise<number> {
    this.loading = true;
    const to = Date.now();
    const from = to - minutes * 60_000;
    const iso = (ms: number) => new Date(ms).toISOString();
    this.series.clear();
    let points = 0;
    const add = (id: string, attr: string, t: number, v: any) => {
      if (!this.series.has(id)) this.series.set(id, new Map());
      const m = this.series.get(id)!;
      if (!m.has(attr)) m.set(attr, []);
      m.get(attr)!.push({ t, v });
      points++;
    };
    const jobs: Promise<void>[] = [];
    for (const k of KINDS) {
      const attrs = k.type === 'Vehicle' ? [k.main, 'location', 'responseStatus'] : [k.main];
      for (const attr of attrs) {
        const numeric = attr !== 'location' && attr !== 'responseStatus';
        // The last value before the window: the state at its start.
        jobs.push(
          temporalAll(
            { type: k.type, attrs: attr, timerel: 'before', timeAt: iso(from), lastN: '1', format: 'temporalValues' },
            signal,
          )
            .then((list) => {
              for (const e of list) for (const [t, v] of values(e[attr])) add(e.id, attr, t, v);
            })
            .catch(() => undefined),
        );
        // Inside the window: a value per minute (the mean for numbers).
        const params: Record<string, string> = numeric
          ? { aggrMethods: 'avg', aggrPeriodDuration: 'PT1M', format: 'aggregatedValues' }
          : { format: 'temporalValues' };
        jobs.push(
          temporalAll(
            { type: k.type, attrs: attr, timerel: 'between', timeAt: iso(from), endTimeAt: iso(to), ...params },
            signal,
          )
            .then((list) => {
              for (const e of list) for (const [t, v] of values(e[attr])) add(e.id, attr, t, v);
            })
            .catch(() => undefined),
        );
      }
    }
    await Promise.all(jobs);
    for (const m of this.series.values()) for (const s of m.values()) s.sort((a, b) => a.t - b.t);
    this.from = from;
    this.to = to;
    this.active = true;
    this.loading = false;
    this.seek(from);
    return points;
  }

  stop(): void {
    this.active = false;
    this.cache = null;
    city.emit('entities');
    city.emit('incidents');
    city.emit('mode');
  }

  seek(at: number): void {
    this.at = Math.min(Math.max(at, this.from), this.to);
    this.cache = null;
    city.emit('entities');
    city.emit('incidents');
    city.emit('mode');
  }

  /** The entities as they were at `at`: each replayed attribute's last value by then. */
  entities(): Map<string, any> {
    if (this.cache && this.cache.at === this.at) return this.cache.entities;
    const out = new Map<string, any>();
    for (const [id, e] of city.entities) {
      const m = this.series.get(id);
      if (!m) {
        out.set(id, { ...e, ...blank(e) });
        continue;
      }
      const copy = { ...e, ...blank(e) };
      for (const [attr, s] of m) {
        const v = lastAt(s, this.at);
        if (v !== undefined) copy[attr] = v;
      }
      out.set(id, copy);
    }
    this.cache = { at: this.at, entities: out };
    return out;
  }

  incidents(): Incident[] {
    const out: Incident[] = [];
    for (const i of city.incidents.values()) {
      const x = incidentAt(i, this.at);
      if (x) out.push(x);
    }
    return out;
  }

  mode(): ModeState {
    return modeAt(city.mode, this.at);
  }
}

/** Values of one attribute in a temporal answer: `[time ms, value]`. */
function values(a: any): [number, any][] {
  if (!a) return [];
  const one = Array.isArray(a) ? a[0] : a;
  if (!one) return [];
  if (Array.isArray(one.values)) return one.values.map((p: any) => [Date.parse(p[1]), p[0]]);
  if (Array.isArray(one.avg)) return one.avg.map((p: any) => [Date.parse(p[1]), p[0]]);
  if (Array.isArray(one.objects)) return one.objects.map((p: any) => [Date.parse(p[1]), p[0]]);
  return [];
}

/** The replayed attributes of `e`'s kind, unknown until history says otherwise. */
function blank(e: any): Record<string, undefined> {
  const k = KINDS.find((k) => k.type === e.type);
  return k ? { [k.main]: undefined } : {};
}

function lastAt(s: Series, at: number): any {
  let lo = 0;
  let hi = s.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (s[mid].t <= at) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found >= 0 ? s[found].v : undefined;
}

/** An incident as it was at `at` (its status from its moves), or null if not yet opened. */
export function incidentAt(i: Incident, at: number): Incident | null {
  if (Date.parse(i.openedAt) > at) return null;
  let status = 'new';
  for (const h of i.history) {
    if (Date.parse(h.at) > at) break;
    if (h.to) status = h.to;
  }
  return { ...i, status, history: i.history.filter((h) => Date.parse(h.at) <= at) };
}

/** The mode of the tenant and of each area at `at`, from the record of switches. */
export function modeAt(m: ModeState, at: number): ModeState {
  let mode = 'normal';
  const areas: Record<string, string> = {};
  const history = m.history.filter((h) => Date.parse(h.at) <= at);
  for (const h of history) {
    if (h.area) areas[h.area] = h.to;
    else mode = h.to;
  }
  return { mode, areas, history };
}

export const replay = new Replay();

/** What the views show: the city now, or as it was while replaying. */
export function shownEntities(): Map<string, any> {
  return replay.active ? replay.entities() : city.entities;
}
export function shownIncidents(): Incident[] {
  return replay.active ? replay.incidents() : [...city.incidents.values()];
}
export function shownMode(): ModeState {
  return replay.active ? replay.mode() : city.mode;
}
