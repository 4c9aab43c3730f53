// The city as the console knows it: entities (keyValues), incidents, mode and areas.
// Loaded once through queries, then kept current by the live feeds (entity changes on
// /platform/v1/live, incidents on /platform/v1/events/stream): the page never polls
// the entity set.

import { get, queryAll, stream } from './api';
import { KINDS } from './classify';

export interface Incident {
  id: string;
  category: string;
  severity: string;
  status: string;
  title: string;
  department?: string;
  unit?: string;
  location?: [number, number];
  entities: string[];
  rules: string[];
  openedAt: string;
  updatedAt: string;
  acknowledgedAt?: string;
  resolvedAt?: string;
  closedAt?: string;
  sla: { mode: string; ackBreachedAt?: string; resolveBreachedAt?: string };
  tasks?: { n: number; department: string; title: string; status: string; after?: number[] }[];
  request?: Record<string, any>;
  attachments?: { url: string; name?: string; at: string; by: string }[];
  history: { at: string; by: string; action: string; from?: string; to?: string; reason?: string; note?: string }[];
}

export interface ModeState {
  mode: string;
  areas: Record<string, string>;
  history: { at: string; by: string; area?: string; from: string; to: string; reason: string }[];
}

/** Attributes the map, KPIs and lists read (keyValues, projected). */
export const LIVE_ATTRS = [
  'name', 'location', 'averageVehicleSpeed', 'intensity', 'occupancy', 'congested', 'dateObserved',
  'refRoadSegment', 'travelTimeIndex', 'queueLength', 'delay', 'refTrafficLight', 'vehicleCount',
  'availableSpotNumber', 'totalSpotNumber', 'status', 'pm25', 'pm10', 'no2', 'airQualityLevel',
  'responseStatus', 'serviceStatus', 'speed', 'vehicleType', 'illuminanceLevel', 'powerState',
];
export const LIVE_TYPES = KINDS.map((k) => k.type);

type Topic = 'entities' | 'incidents' | 'mode' | 'roads' | 'feed';

class City {
  entities = new Map<string, any>();
  /** When each entity last changed here (ms since epoch), from the live feed or load. */
  seen = new Map<string, number>();
  roads = new Map<string, any>();
  incidents = new Map<string, Incident>();
  mode: ModeState = { mode: 'normal', areas: {}, history: [] };
  areas: Record<string, { geometry: any; description?: string }> = {};
  /** Live feed state, for the status line. */
  feed = { entities: 'connecting', incidents: 'connecting', notifications: 0, lagged: 0 };
  loaded = false;
  private listeners = new Map<Topic, Set<() => void>>();
  private pending = new Set<Topic>();
  private scheduled = false;

  on(topic: Topic, f: () => void): () => void {
    if (!this.listeners.has(topic)) this.listeners.set(topic, new Set());
    this.listeners.get(topic)!.add(f);
    return () => this.listeners.get(topic)!.delete(f);
  }

  /** Tells listeners, at most once per frame however many changes arrive. */
  emit(topic: Topic): void {
    this.pending.add(topic);
    if (this.scheduled) return;
    this.scheduled = true;
    const flush = () => {
      this.scheduled = false;
      const topics = [...this.pending];
      this.pending.clear();
      for (const tp of topics) for (const f of this.listeners.get(tp) ?? []) f();
    };
    if (document.visibilityState === 'hidden') setTimeout(flush, 250);
    else requestAnimationFrame(flush);
  }

  upsert(e: any): void {
    const old = this.entities.get(e.id);
    this.entities.set(e.id, old ? { ...old, ...e } : e);
    this.seen.set(e.id, Date.now());
  }

  /** Changes notified while the newest reload is under way (deletions as
   * `{id, deleted: true}`), applied again over its result. */
  private during: any[] | null = null;
  private reloads = 0;

  /** Reads every entity of the map's kinds again and replaces what was known (an
   * entity deleted meanwhile goes); changes notified meanwhile are applied on top. A
   * newer reload supersedes one still under way. */
  async loadEntities(signal: AbortSignal): Promise<void> {
    const generation = ++this.reloads;
    this.during = [];
    const lists = await Promise.all(
      LIVE_TYPES.map((type) => queryAll({ type, attrs: LIVE_ATTRS.join(',') }, signal).catch(() => null)),
    );
    if (generation !== this.reloads) return;
    const during = this.during ?? [];
    this.during = null;
    if (lists.some((l) => l === null)) {
      // A kind could not be read: keep what is known rather than lose it.
      for (const l of lists) for (const e of l ?? []) this.upsert(e);
    } else {
      this.entities = new Map();
      for (const l of lists) for (const e of l ?? []) this.upsert(e);
    }
    for (const e of during) {
      if (e.deleted) {
        this.entities.delete(e.id);
        this.seen.delete(e.id);
      } else this.upsert(e);
    }
    const roads = await queryAll({ type: 'RoadSegment', attrs: 'name,location,maximumAllowedSpeed' }, signal).catch(
      () => [],
    );
    for (const r of roads) this.roads.set(r.id, r);
    this.emit('entities');
    this.emit('roads');
  }

  async loadIncidents(signal?: AbortSignal): Promise<void> {
    const list = await get<Incident[]>('/platform/v1/incidents', signal).catch(() => []);
    this.incidents.clear();
    for (const i of list) this.incidents.set(i.id, i);
    this.emit('incidents');
  }

  async loadMode(): Promise<void> {
    const [m, a] = await Promise.all([
      get<ModeState>('/platform/v1/mode').catch(() => null),
      get('/platform/v1/areas').catch(() => ({})),
    ]);
    if (m) this.mode = m;
    this.areas = a ?? {};
    this.emit('mode');
  }

  /**
   * Opens the live feeds, then loads the current state once the entity subscription is
   * in place (`ready`), so that nothing changed in between is lost. After a reconnection
   * (the server ends streams every 15 minutes; networks fail) the state is read again:
   * what changed while disconnected is not replayed by the feeds.
   */
  async start(signal: AbortSignal): Promise<void> {
    // Once the state was read, every later `ready` (a reconnection, or a first one
    // that came after the 5 s wait) reads it again.
    let loadStarted = false;
    const entitiesReady = new Promise<void>((resolve) => {
      const q = new URLSearchParams({
        type: LIVE_TYPES.join(','),
        attrs: LIVE_ATTRS.join(','),
        format: 'keyValues',
        notificationTrigger: 'attributeCreated,attributeUpdated,entityDeleted',
      });
      stream(
        `/platform/v1/live?${q}`,
        (ev) => {
          if (ev.event === 'ready') {
            this.feed.entities = 'live';
            this.emit('feed');
            if (loadStarted) void this.loadEntities(signal);
            resolve();
          } else if (ev.event === 'notification') {
            this.feed.notifications++;
            const deleted = ev.data.triggerReason === 'entityDeleted';
            for (const e of ev.data.data ?? []) {
              if (deleted) {
                this.entities.delete(e.id);
                this.seen.delete(e.id);
                this.during?.push({ id: e.id, deleted: true });
              } else {
                this.upsert(e);
                this.during?.push(e);
              }
            }
            this.emit('entities');
          } else if (ev.event === 'lagged') {
            this.feed.lagged += ev.data.missed ?? 0;
            void this.loadEntities(signal);
          } else if (ev.event === 'disconnected') {
            this.feed.entities = 'reconnecting';
            this.emit('feed');
          } else if (ev.event === 'refused') {
            // This user may read but not subscribe: a map as of loading, no live feed.
            this.feed.entities = 'not live';
            this.emit('feed');
            resolve();
          }
        },
        signal,
      );
      // A stream that cannot open yet must not keep the page empty.
      setTimeout(resolve, 5000);
    });
    let incidentsLoadStarted = false;
    stream(
      '/platform/v1/events/stream?feed=incidents',
      (ev) => {
        if (ev.event === 'open') {
          this.feed.incidents = 'live';
          this.emit('feed');
          if (incidentsLoadStarted) void this.loadIncidents();
        } else if (ev.event === 'incident') {
          this.incidents.set(ev.data.id, ev.data);
          this.emit('incidents');
        } else if (ev.event === 'lagged') {
          void this.loadIncidents();
        } else if (ev.event === 'disconnected') {
          this.feed.incidents = 'reconnecting';
          this.emit('feed');
        } else if (ev.event === 'refused') {
          this.feed.incidents = 'not live';
          this.emit('feed');
        }
      },
      signal,
    );
    await entitiesReady;
    loadStarted = true;
    incidentsLoadStarted = true;
    await Promise.all([this.loadEntities(signal), this.loadIncidents(signal), this.loadMode()]);
    this.loaded = true;
    this.emit('feed');
  }
}

export const city = new City();
// The browser tests read the live feed's counters.
(window as any).citybrainFeed = city.feed;

/** Whether an incident status is open (not resolved, closed, cancelled or duplicate). */
export function isOpen(status: string): boolean {
  return !['resolved', 'closed', 'cancelled', 'duplicate'].includes(status);
}

/** The moves each status allows (the hub's lifecycle, crates/hub/src/incident.rs). */
export const MOVES: Record<string, string[]> = {
  new: ['acknowledged', 'dispatched', 'cancelled', 'duplicate'],
  acknowledged: ['dispatched', 'in_progress', 'cancelled', 'duplicate'],
  dispatched: ['in_progress', 'on_hold', 'cancelled', 'duplicate'],
  in_progress: ['on_hold', 'resolved', 'cancelled', 'duplicate'],
  on_hold: ['in_progress', 'cancelled', 'duplicate'],
  resolved: ['closed', 'reopened'],
  closed: ['reopened'],
  reopened: ['acknowledged', 'dispatched', 'in_progress', 'cancelled', 'duplicate'],
  cancelled: [],
  duplicate: [],
};
