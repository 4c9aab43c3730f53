// English and Chinese. Strings are written in English where they are used and looked
// up here for Chinese; `tests/i18n.test.mjs` checks that every string has its
// translation.

import { zh } from './zh';

export type Lang = 'en' | 'zh';
const KEY = 'citybrain.lang';

/** English wording of values shown by name (statuses, moves). */
const en: Record<string, string> = {
  in_progress: 'in progress',
  on_hold: 'on hold',
  at_scene: 'at the scene',
  'move:acknowledged': 'Acknowledge',
  'move:dispatched': 'Dispatch',
  'move:in_progress': 'Start work',
  'move:on_hold': 'Put on hold',
  'move:resolved': 'Resolve',
  'move:closed': 'Close',
  'move:reopened': 'Reopen',
  'move:cancelled': 'Cancel incident',
  'move:duplicate': 'Mark duplicate',
};

let lang: Lang = (localStorage.getItem(KEY) as Lang) ?? (navigator.language.startsWith('zh') ? 'zh' : 'en');
const listeners: (() => void)[] = [];

export function currentLang(): Lang {
  return lang;
}

export function setLang(l: Lang): void {
  lang = l;
  localStorage.setItem(KEY, l);
  document.documentElement.lang = l === 'zh' ? 'zh-CN' : 'en';
  for (const f of listeners) f();
}

export function onLangChange(f: () => void): void {
  listeners.push(f);
}

/** The string in the current language; `{name}` placeholders filled from `vars`. */
export function t(s: string, vars: Record<string, string | number> = {}): string {
  let out = lang === 'zh' ? (zh[s] ?? s) : (en[s] ?? s);
  for (const [k, v] of Object.entries(vars)) out = out.replaceAll(`{${k}}`, String(v));
  return out;
}

export function fmtTime(iso: string | number | Date | undefined | null): string {
  if (iso === undefined || iso === null || iso === '') return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB', { hour12: false });
}

export function fmtNum(v: unknown, digits = 1): string {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '—';
  return v.toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB', { maximumFractionDigits: digits });
}

export function fmtDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  if (seconds < 90) return t('{n} s', { n: Math.round(seconds) });
  if (seconds < 5400) return t('{n} min', { n: Math.round(seconds / 60) });
  return t('{n} h', { n: fmtNum(seconds / 3600) });
}

document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
