// Every string the console shows has its Chinese translation (strings are written in
// English where used: t('...'), and the names of statuses, severities, moves and
// labels that are translated by value).

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

const src = new URL('../src/', import.meta.url).pathname;
const zhText = readFileSync(join(src, 'zh.ts'), 'utf8');
const keys = new Set();
for (const m of zhText.matchAll(/^\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([A-Za-z_:]+)):/gm)) keys.add(m[1] ?? m[2] ?? m[3]);

test('every t() string has a Chinese translation', () => {
  const missing = [];
  for (const f of readdirSync(src).filter((f) => f.endsWith('.ts') && f !== 'zh.ts')) {
    const text = readFileSync(join(src, f), 'utf8');
    for (const m of text.matchAll(/(?<![\w.])t\('((?:[^'\\]|\\.)*)'/g)) if (!keys.has(m[1])) missing.push(`${f}: ${m[1]}`);
  }
  assert.deepEqual(missing, []);
});

test('values shown through t() have translations too', () => {
  const values = [
    // statuses, moves, severities, modes, task states, history actions, event kinds
    ...['new', 'acknowledged', 'dispatched', 'in_progress', 'on_hold', 'resolved', 'closed', 'reopened', 'cancelled', 'duplicate'],
    ...['acknowledged', 'dispatched', 'in_progress', 'on_hold', 'resolved', 'closed', 'reopened', 'cancelled', 'duplicate'].map((m) => `move:${m}`),
    ...['low', 'medium', 'high', 'critical', 'normal', 'emergency', 'open', 'done'],
    ...['opened', 'event', 'status', 'comment', 'attachment', 'cleared', 'escalated', 'tasks', 'task', 'raised', 'momentary'],
    ...['available', 'returning', 'at_scene', 'connecting', 'reconnecting', 'live', 'not live'],
    // views and kinds
    ...['City map', 'Incidents', 'Rules', 'Ingest', 'Governance', 'Traffic detectors', 'Car parks', 'Air quality', 'Vehicles', 'Streetlights'],
  ];
  assert.deepEqual(values.filter((v) => !keys.has(v)), []);
});
