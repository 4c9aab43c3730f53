// What each kind of entity's state means, as a level shown by shape, colour and a
// word together (colour is never the only signal), with colour-blind-safe colours
// (Okabe and Ito's palette).

import { t } from './i18n';

export type Level = 'good' | 'warn' | 'bad' | 'none';

export const LEVEL_COLOR: Record<Level, string> = {
  good: '#0072B2',
  warn: '#E69F00',
  bad: '#D55E00',
  none: '#6b6b6b',
};

/** The shape each level is drawn with, on the map and in legends. */
export const LEVEL_SHAPE: Record<Level, 'circle' | 'diamond' | 'triangle' | 'ring'> = {
  good: 'circle',
  warn: 'diamond',
  bad: 'triangle',
  none: 'ring',
};

export interface Kind {
  type: string;
  letter: string;
  label: string;
  /** The attribute that decides the level, charted first in the detail view. */
  main: string;
  level: (e: any) => Level;
  /** The level in words, with the value it comes from. */
  describe: (e: any) => string;
}

export function val(v: any): any {
  if (v && typeof v === 'object' && '@value' in v) return v['@value'];
  if (v && typeof v === 'object' && 'value' in v && 'type' in v) return v.value;
  return v;
}

export function num(v: any): number | undefined {
  const x = val(v);
  return typeof x === 'number' && Number.isFinite(x) ? x : undefined;
}

/** US EPA AQI for PM2.5 (µg/m³, 24-hour breakpoints of 2024). */
export function aqiPm25(c: number): number {
  const bp: [number, number, number, number][] = [
    [0, 9.0, 0, 50],
    [9.1, 35.4, 51, 100],
    [35.5, 55.4, 101, 150],
    [55.5, 125.4, 151, 200],
    [125.5, 225.4, 201, 300],
    [225.5, 325.4, 301, 500],
  ];
  const x = Math.max(0, Math.round(c * 10) / 10);
  for (const [cl, ch, il, ih] of bp) {
    if (x <= ch) return Math.round(((ih - il) / (ch - cl)) * (x - cl) + il);
  }
  return 500;
}

const speedLevel = (e: any): Level => {
  const s = num(e.averageVehicleSpeed);
  if (s === undefined) return 'none';
  return s >= 40 ? 'good' : s >= 15 ? 'warn' : 'bad';
};

export const KINDS: Kind[] = [
  {
    type: 'TrafficFlowObserved',
    letter: 'T',
    label: 'Traffic detectors',
    main: 'averageVehicleSpeed',
    level: speedLevel,
    describe: (e) => {
      const s = num(e.averageVehicleSpeed);
      const l = speedLevel(e);
      const word = { good: t('free flow'), warn: t('slow'), bad: t('congested'), none: t('no reading') }[l];
      return s === undefined ? word : `${word}, ${Math.round(s)} km/h`;
    },
  },
  {
    type: 'OffStreetParking',
    letter: 'P',
    label: 'Car parks',
    main: 'availableSpotNumber',
    level: (e) => {
      const free = num(e.availableSpotNumber);
      const total = num(e.totalSpotNumber);
      if (free === undefined) return 'none';
      const share = total ? free / total : free > 0 ? 1 : 0;
      return share > 0.2 ? 'good' : share > 0.05 ? 'warn' : 'bad';
    },
    describe: (e) => {
      const free = num(e.availableSpotNumber);
      const total = num(e.totalSpotNumber);
      if (free === undefined) return t('no reading');
      return t('{free} of {total} spaces free', { free, total: total ?? '?' });
    },
  },
  {
    type: 'AirQualityObserved',
    letter: 'A',
    label: 'Air quality',
    main: 'pm25',
    level: (e) => {
      const p = num(e.pm25);
      if (p === undefined) return 'none';
      const a = aqiPm25(p);
      return a <= 50 ? 'good' : a <= 100 ? 'warn' : 'bad';
    },
    describe: (e) => {
      const p = num(e.pm25);
      if (p === undefined) return t('no reading');
      const a = aqiPm25(p);
      const word = a <= 50 ? t('good') : a <= 100 ? t('moderate') : t('unhealthy');
      return t('AQI {aqi} ({word})', { aqi: a, word });
    },
  },
  {
    type: 'Vehicle',
    letter: 'V',
    label: 'Vehicles',
    main: 'speed',
    level: (e) => {
      const r = val(e.responseStatus);
      if (r === undefined) return num(e.speed) === undefined ? 'none' : 'good';
      return r === 'available' ? 'good' : r === 'returning' ? 'warn' : 'bad';
    },
    describe: (e) => {
      const r = val(e.responseStatus);
      const s = num(e.speed);
      const parts = [r ? t(String(r)) : '', s === undefined ? '' : `${Math.round(s)} km/h`];
      return parts.filter(Boolean).join(', ') || t('no reading');
    },
  },
  {
    type: 'Streetlight',
    letter: 'L',
    label: 'Streetlights',
    main: 'illuminanceLevel',
    level: (e) => {
      const s = val(e.status);
      return s === undefined ? 'none' : s === 'ok' ? 'good' : 'bad';
    },
    describe: (e) => (val(e.status) === 'ok' ? t('working') : val(e.status) ? t('defective lamp') : t('no reading')),
  },
];

export const KIND_BY_TYPE = new Map(KINDS.map((k) => [k.type, k]));

export const SEVERITIES = ['critical', 'high', 'medium', 'low'] as const;
export const SEVERITY_COLOR: Record<string, string> = {
  low: '#56B4E9',
  medium: '#E69F00',
  high: '#D55E00',
  critical: '#CC79A7',
};
export const SEVERITY_LETTER: Record<string, string> = { low: 'L', medium: 'M', high: 'H', critical: 'C' };

/** Roads by congestion: speed over the limit. */
export function roadLevel(speed: number | undefined, limit: number | undefined): Level {
  if (speed === undefined) return 'none';
  const r = speed / (limit && limit > 0 ? limit : 50);
  return r >= 0.7 ? 'good' : r >= 0.4 ? 'warn' : 'bad';
}

/** A shape as SVG, for legends and lists. */
export function shapeSvg(level: Level, color = LEVEL_COLOR[level], letter = ''): string {
  const s = LEVEL_SHAPE[level];
  const path =
    s === 'circle'
      ? '<circle cx="10" cy="10" r="8"/>'
      : s === 'diamond'
        ? '<path d="M10 1 L19 10 L10 19 L1 10 Z"/>'
        : s === 'triangle'
          ? '<path d="M10 1 L19 18 L1 18 Z"/>'
          : '<circle cx="10" cy="10" r="7" fill="none" stroke-width="3"/>';
  const fill = s === 'ring' ? `stroke="${color}"` : `fill="${color}" stroke="#fff" stroke-width="1"`;
  const text = letter
    ? `<text x="10" y="${s === 'triangle' ? 15 : 14}" font-size="9" text-anchor="middle" fill="#fff" font-weight="700">${letter}</text>`
    : '';
  return `<svg class="shape" width="20" height="20" viewBox="0 0 20 20" aria-hidden="true"><g ${fill}>${path}</g>${text}</svg>`;
}
