// The live map: drawn entirely from the city's own data (areas, the road network,
// entities) with MapLibre GL JS and an inline style of GeoJSON sources: no tiles, no
// sprite, no glyphs (icons are drawn here, their letters in the browser's own fonts).

import * as maplibregl from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';
// MapLibre's worker is its own module file: served from this server like the rest.
import workerUrl from 'maplibre-gl/dist/maplibre-gl-worker.mjs?url';
import { KINDS, KIND_BY_TYPE, LEVEL_COLOR, LEVEL_SHAPE, type Level, roadLevel, num, SEVERITY_COLOR, SEVERITY_LETTER } from './classify';
import { t } from './i18n';
import { city, isOpen } from './state';
import { shownEntities, shownIncidents, shownMode } from './replay';

maplibregl.setWorkerUrl(workerUrl);

const FAR_POINTS = 3000;
/** How long each redraw took on the main thread (ms), for the browser tests. */
const drawTimes: number[] = [];
(window as any).citybrainDrawMs = drawTimes;

const LEVELS: Level[] = ['good', 'warn', 'bad', 'none'];

/** Draws one icon: a shape for the level, its colour, and a letter for the kind. */
function icon(shape: string, color: string, letter: string, outline = '#ffffff'): ImageData {
  const size = 44; // drawn at pixelRatio 2: 22 px on the map
  const c = document.createElement('canvas');
  c.width = c.height = size;
  const g = c.getContext('2d')!;
  g.lineWidth = 3;
  g.strokeStyle = outline;
  g.fillStyle = color;
  g.beginPath();
  const m = size / 2;
  if (shape === 'circle') g.arc(m, m, 17, 0, Math.PI * 2);
  else if (shape === 'diamond') {
    g.moveTo(m, 3);
    g.lineTo(size - 3, m);
    g.lineTo(m, size - 3);
    g.lineTo(3, m);
    g.closePath();
  } else if (shape === 'triangle') {
    g.moveTo(m, 3);
    g.lineTo(size - 3, size - 5);
    g.lineTo(3, size - 5);
    g.closePath();
  } else {
    g.arc(m, m, 15, 0, Math.PI * 2);
  }
  if (shape === 'ring') {
    g.fillStyle = '#ffffff';
    g.fill();
    g.lineWidth = 5;
    g.strokeStyle = color;
    g.stroke();
  } else {
    g.fill();
    g.stroke();
  }
  g.fillStyle = shape === 'ring' ? '#333333' : '#ffffff';
  g.font = 'bold 18px sans-serif';
  g.textAlign = 'center';
  g.textBaseline = 'middle';
  g.fillText(letter, m, shape === 'triangle' ? m + 5 : m + 1);
  return g.getImageData(0, 0, size, size);
}

function hatch(): ImageData {
  const c = document.createElement('canvas');
  c.width = c.height = 16;
  const g = c.getContext('2d')!;
  g.strokeStyle = 'rgba(213, 94, 0, 0.55)';
  g.lineWidth = 2;
  g.beginPath();
  g.moveTo(0, 16);
  g.lineTo(16, 0);
  g.stroke();
  return g.getImageData(0, 0, 16, 16);
}

const empty = (): GeoJSON.FeatureCollection => ({ type: 'FeatureCollection', features: [] });

function point(e: any): [number, number] | null {
  const loc = e.location;
  if (!loc || loc.type !== 'Point' || !Array.isArray(loc.coordinates)) return null;
  const [x, y] = loc.coordinates;
  return Number.isFinite(x) && Number.isFinite(y) ? [x, y] : null;
}

export class CityMap {
  map: maplibregl.Map;
  enabled = new Set(KINDS.filter((k) => k.type !== 'Streetlight').map((k) => k.type));
  private fitted = false;
  /** The icons are added on `load`; drawing before would name missing images. */
  private iconsReady = false;
  private far = 0;
  private lastDraw = 0;
  private timer: number | null = null;
  ready: Promise<void>;

  constructor(container: HTMLElement, private onSelect: (id: string) => void) {
    this.map = new maplibregl.Map({
      container,
      style: {
        version: 8,
        sources: {
          areas: { type: 'geojson', data: empty() },
          roads: { type: 'geojson', data: empty() },
          points: { type: 'geojson', data: empty() },
          incidents: { type: 'geojson', data: empty() },
        },
        layers: [
          { id: 'background', type: 'background', paint: { 'background-color': '#eef1f4' } },
          {
            id: 'areas-fill',
            type: 'fill',
            source: 'areas',
            paint: {
              'fill-color': ['case', ['==', ['get', 'mode'], 'emergency'], '#D55E00', '#0072B2'],
              'fill-opacity': ['case', ['==', ['get', 'mode'], 'emergency'], 0.12, 0.04],
            },
          },
          {
            id: 'areas-hatch',
            type: 'fill',
            source: 'areas',
            filter: ['==', ['get', 'mode'], 'emergency'],
            paint: { 'fill-pattern': 'hatch' },
          },
          {
            id: 'areas-line',
            type: 'line',
            source: 'areas',
            paint: {
              'line-color': ['case', ['==', ['get', 'mode'], 'emergency'], '#D55E00', '#0072B2'],
              'line-width': ['case', ['==', ['get', 'mode'], 'emergency'], 3, 1.5],
            },
          },
          { id: 'roads-base', type: 'line', source: 'roads', paint: { 'line-color': '#c5cbd3', 'line-width': 7 }, layout: { 'line-cap': 'round' } },
          ...(['good', 'warn', 'bad'] as Level[]).map((l) => ({
            id: `roads-${l}`,
            type: 'line' as const,
            source: 'roads',
            filter: ['==', ['get', 'level'], l] as any,
            paint: {
              'line-color': LEVEL_COLOR[l],
              'line-width': l === 'good' ? 3 : l === 'warn' ? 4 : 5,
              ...(l === 'good' ? {} : { 'line-dasharray': l === 'warn' ? [3, 1.5] : [1, 1] }),
            },
          })),
          {
            // Many entities at a city-wide zoom: circles (cheap to draw), the level shown
            // by size and outline as well as colour; the shaped icons from zoom 14.
            id: 'points-far',
            type: 'circle',
            source: 'points',
            maxzoom: 0,
            paint: {
              // Smaller at city-wide zooms: less to fill (the cost of software renderers).
              'circle-radius': [
                'interpolate',
                ['linear'],
                ['zoom'],
                10,
                ['match', ['get', 'level'], 'bad', 4, 'warn', 3.2, 2.5],
                14,
                ['match', ['get', 'level'], 'bad', 7, 'warn', 5.5, 4],
              ],
              'circle-color': ['match', ['get', 'level'], 'good', LEVEL_COLOR.good, 'warn', LEVEL_COLOR.warn, 'bad', LEVEL_COLOR.bad, '#ffffff'],
              'circle-stroke-color': ['match', ['get', 'level'], 'bad', '#1b1f24', 'none', LEVEL_COLOR.none, '#ffffff'],
              'circle-stroke-width': ['match', ['get', 'level'], 'bad', 2, 'none', 2.5, 1],
            },
          },
          {
            id: 'points',
            type: 'symbol',
            source: 'points',
            layout: { 'icon-image': ['get', 'icon'], 'icon-allow-overlap': true, 'icon-ignore-placement': true },
          },
          {
            id: 'incidents',
            type: 'symbol',
            source: 'incidents',
            layout: { 'icon-image': ['get', 'icon'], 'icon-allow-overlap': true, 'icon-ignore-placement': true, 'icon-size': 1.25, 'icon-anchor': 'bottom', 'icon-offset': [0, -8] },
          },
        ],
      },
      center: [120.15, 30.25],
      zoom: 12,
      attributionControl: false,
      fadeDuration: 0,
    });
    // The browser tests ask the map what it drew.
    (window as any).citybrainMap = this.map;
    this.map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-left');
    this.map.addControl(new maplibregl.ScaleControl({}), 'bottom-left');
    this.map.getCanvas().setAttribute('aria-label', t('City map. Use the entity list beside it to reach each entity by keyboard.'));
    this.ready = new Promise((resolve) => {
      this.map.on('load', () => {
        for (const k of KINDS)
          for (const l of LEVELS) this.map.addImage(`${k.type}-${l}`, icon(LEVEL_SHAPE[l], LEVEL_COLOR[l], k.letter), { pixelRatio: 2 });
        for (const [s, c] of Object.entries(SEVERITY_COLOR))
          this.map.addImage(`incident-${s}`, icon('triangle', c, SEVERITY_LETTER[s], '#1b1f24'), { pixelRatio: 2 });
        this.map.addImage('hatch', hatch(), { pixelRatio: 2 });
        this.iconsReady = true;
        this.drawAll();
        resolve();
      });
    });
    for (const layer of ['points', 'points-far', 'incidents']) {
      this.map.on('click', layer, (ev: maplibregl.MapLayerMouseEvent) => {
        const f = ev.features?.[0];
        if (f?.properties?.id) this.onSelect(String(f.properties.id));
      });
      this.map.on('mouseenter', layer, () => (this.map.getCanvas().style.cursor = 'pointer'));
      this.map.on('mouseleave', layer, () => (this.map.getCanvas().style.cursor = ''));
    }
    city.on('entities', () => this.schedule());
    city.on('roads', () => this.schedule());
    city.on('incidents', () => this.schedule());
    city.on('mode', () => this.schedule());
  }

  /** Redraws at most twice a second, however fast changes arrive. */
  schedule(): void {
    if (this.timer !== null) return;
    const wait = Math.max(0, 500 - (performance.now() - this.lastDraw));
    this.timer = window.setTimeout(() => {
      this.timer = null;
      this.lastDraw = performance.now();
      this.drawAll();
    }, wait);
  }

  setEnabled(type: string, on: boolean): void {
    if (on) this.enabled.add(type);
    else this.enabled.delete(type);
    this.drawAll();
  }

  private source(name: string): maplibregl.GeoJSONSource | undefined {
    return this.map.getSource(name) as maplibregl.GeoJSONSource | undefined;
  }

  drawAll(): void {
    if (!this.iconsReady) return; // `load` draws
    const t0 = performance.now();
    const entities = shownEntities();
    const features: GeoJSON.Feature[] = [];
    // Roads by congestion: the speeds their detectors report.
    const roadSpeed = new Map<string, number[]>();
    for (const e of entities.values()) {
      const k = KIND_BY_TYPE.get(e.type);
      if (e.type === 'TrafficFlowObserved') {
        const s = num(e.averageVehicleSpeed);
        const seg = e.refRoadSegment;
        if (s !== undefined && typeof seg === 'string') {
          if (!roadSpeed.has(seg)) roadSpeed.set(seg, []);
          roadSpeed.get(seg)!.push(s);
        }
      }
      if (!k || !this.enabled.has(e.type)) continue;
      const p = point(e);
      if (!p) continue;
      features.push({
        type: 'Feature',
        geometry: { type: 'Point', coordinates: p },
        properties: { id: e.id, type: e.type, level: k.level(e), icon: `${e.type}-${k.level(e)}` },
      });
    }
    this.source('points')?.setData({ type: 'FeatureCollection', features });
    // Above FAR_POINTS entities, circles below zoom 14 (icons cost ten times more to draw).
    const far = features.length > FAR_POINTS ? 14 : 0;
    if (far !== this.far) {
      this.far = far;
      this.map.setLayerZoomRange('points-far', 0, far);
      this.map.setLayerZoomRange('points', far, 24);
    }
    const roads: GeoJSON.Feature[] = [];
    for (const r of city.roads.values()) {
      if (!r.location || r.location.type !== 'LineString') continue;
      const speeds = roadSpeed.get(r.id);
      const mean = speeds?.length ? speeds.reduce((a, b) => a + b, 0) / speeds.length : undefined;
      roads.push({
        type: 'Feature',
        geometry: r.location,
        properties: { id: r.id, level: roadLevel(mean, num(r.maximumAllowedSpeed)) },
      });
    }
    this.source('roads')?.setData({ type: 'FeatureCollection', features: roads });
    const inc: GeoJSON.Feature[] = [];
    for (const i of shownIncidents()) {
      if (!isOpen(i.status) || !i.location) continue;
      inc.push({
        type: 'Feature',
        geometry: { type: 'Point', coordinates: i.location },
        properties: { id: i.id, icon: `incident-${i.severity}` },
      });
    }
    this.source('incidents')?.setData({ type: 'FeatureCollection', features: inc });
    const mode = shownMode();
    const areas: GeoJSON.Feature[] = Object.entries(city.areas).map(([name, a]) => ({
      type: 'Feature',
      geometry: a.geometry,
      properties: { name, mode: mode.mode === 'emergency' ? 'emergency' : (mode.areas[name] ?? 'normal') },
    }));
    this.source('areas')?.setData({ type: 'FeatureCollection', features: areas });
    if (!this.fitted && (features.length > 0 || roads.length > 0)) this.fit(features, roads);
    drawTimes.push(performance.now() - t0);
    if (drawTimes.length > 200) drawTimes.shift();
  }

  private fit(points: GeoJSON.Feature[], roads: GeoJSON.Feature[]): void {
    const b = new maplibregl.LngLatBounds();
    for (const f of points) b.extend((f.geometry as GeoJSON.Point).coordinates as [number, number]);
    for (const f of roads) for (const c of (f.geometry as GeoJSON.LineString).coordinates) b.extend(c as [number, number]);
    if (b.isEmpty()) return;
    this.fitted = true;
    this.map.fitBounds(b, { padding: 40, animate: false, maxZoom: 16 });
  }

  flyTo(id: string): void {
    const e = city.entities.get(id);
    const p = e ? point(e) : null;
    if (p) this.map.easeTo({ center: p, zoom: Math.max(this.map.getZoom(), 14) });
  }
}
