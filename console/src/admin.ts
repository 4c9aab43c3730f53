// Areas and the normal/emergency mode; rules; ingest sources and dead letters; the
// data catalogue and the audit log with its verification.

import { ApiError, get, post, put } from './api';
import { announce, clear, confirmDialog, h } from './dom';
import { fmtNum, fmtTime, t } from './i18n';
import { city } from './state';
import { replay, shownMode } from './replay';
import { verifyAudit } from './audit';

export function renderModes(root: HTMLElement): void {
  const m = shownMode();
  clear(root);
  const row = (label: string, area: string | null, mode: string) =>
    h(
      'li',
      { class: `mode-row mode-${mode}` },
      h('span', {}, h('strong', {}, label), ' — ', h('span', { class: 'mode-word' }, mode === 'emergency' ? `⚠ ${t('emergency')}` : t('normal'))),
      replay.active
        ? null
        : h(
            'button',
            {
              type: 'button',
              class: mode === 'emergency' ? 'secondary' : 'danger',
              'data-area': area ?? '*',
              onclick: () => void switchMode(area, mode === 'emergency' ? 'normal' : 'emergency', label),
            },
            mode === 'emergency' ? t('Back to normal') : t('Switch to emergency'),
          ),
    );
  root.append(
    h('h2', { class: 'panel-title' }, t('Mode')),
    h(
      'ul',
      { class: 'plain modes' },
      row(t('Whole city'), null, m.mode),
      ...Object.keys(city.areas)
        .sort()
        .map((a) => row(a, a, m.mode === 'emergency' ? 'emergency' : (m.areas[a] ?? 'normal'))),
    ),
  );
}

async function switchMode(area: string | null, to: string, label: string): Promise<void> {
  const reason = await confirmDialog({
    title: to === 'emergency' ? t('Switch {area} to emergency?', { area: label }) : t('Return {area} to normal?', { area: label }),
    message:
      to === 'emergency'
        ? t('Emergency mode routes new incidents to the command centre and tightens service levels in this area.')
        : t('Incidents will be routed and timed as usual again.'),
    confirm: to === 'emergency' ? t('Switch to emergency') : t('Back to normal'),
    cancel: t('Cancel'),
    reasonLabel: t('Reason (recorded with the switch)'),
    danger: to === 'emergency',
  });
  if (reason === null) return;
  try {
    await put('/platform/v1/mode', { mode: to, reason, ...(area ? { area } : {}) });
    announce(t('{area} is now in {mode} mode.', { area: label, mode: t(to) }));
    await city.loadMode();
  } catch (e) {
    announce(String(e instanceof ApiError ? e.message : e), 'error');
  }
}

export async function renderRules(root: HTMLElement): Promise<void> {
  clear(root);
  root.append(h('h2', {}, t('Rules')), h('p', {}, t('Loading…')));
  const rules = await get<any[]>('/platform/v1/rules').catch((e) => {
    announce(String(e), 'error');
    return [];
  });
  clear(root);
  const result = h('div', { class: 'backtest', 'aria-live': 'polite' });
  root.append(
    h('h2', {}, t('Rules')),
    h(
      'table',
      {},
      h('caption', { class: 'sr-only' }, t('Rules')),
      h('thead', {}, h('tr', {}, ...[t('Rule'), t('Applies to'), t('Severity'), t('Version'), t('Enabled'), t('Back-test')].map((c) => h('th', { scope: 'col' }, c)))),
      h(
        'tbody',
        {},
        ...rules.map((r) => {
          const spec = r.rule;
          const box = h('input', { type: 'checkbox', id: `rule-${spec.id}`, checked: spec.enabled !== false });
          box.addEventListener('change', async () => {
            try {
              // The rule as stored now (someone may have changed it since this page
              // was drawn), with only `enabled` changed.
              const now = await get(`/platform/v1/rules/${encodeURIComponent(spec.id)}`);
              await put(`/platform/v1/rules/${encodeURIComponent(spec.id)}`, { ...now.rule, enabled: box.checked });
              announce(t('Rule {id} {state}.', { id: spec.id, state: box.checked ? t('enabled') : t('disabled') }));
            } catch (e) {
              box.checked = !box.checked;
              announce(String(e), 'error');
            }
          });
          return h(
            'tr',
            {},
            h('th', { scope: 'row' }, spec.id, spec.description ? h('div', { class: 'muted' }, spec.description) : null),
            h('td', {}, spec.for?.type ?? '—'),
            h('td', {}, t(spec.severity ?? 'medium')),
            h('td', {}, String(r.version), r.status?.disabled_reason ? h('div', { class: 'error' }, r.status.disabled_reason) : null),
            h('td', {}, box, h('label', { for: `rule-${spec.id}`, class: 'sr-only' }, t('Enabled'))),
            h(
              'td',
              {},
              h(
                'button',
                {
                  type: 'button',
                  class: 'secondary small',
                  onclick: async () => {
                    clear(result);
                    result.append(h('p', {}, t('Back-testing {id} over the last 24 hours…', { id: spec.id })));
                    const to = new Date();
                    const from = new Date(to.getTime() - 24 * 3600_000);
                    try {
                      const b = await post('/platform/v1/backtests', { ruleId: spec.id, from: from.toISOString(), to: to.toISOString() });
                      clear(result);
                      const raised = b.events.filter((e: any) => e.kind === 'raised').length;
                      result.append(
                        h('h3', {}, t('Back-test of {id}', { id: spec.id })),
                        h('p', {}, t('{events} events ({raised} raised) over {obs} observations of {n} entities, {from} – {to}.', { events: b.events.length, raised, obs: b.observations, n: b.entities, from: fmtTime(b.from), to: fmtTime(b.to) })),
                        h('ul', {}, ...b.events.slice(0, 20).map((e: any) => h('li', {}, `${fmtTime(e.at)} · ${t(e.kind)} · ${e.entity}${e.value !== undefined ? ` = ${fmtNum(e.value, 2)}` : ''}`))),
                      );
                    } catch (e) {
                      clear(result);
                      result.append(h('p', { class: 'error' }, String(e)));
                    }
                  },
                },
                t('Back-test 24 h'),
              ),
            ),
          );
        }),
      ),
    ),
    result,
  );
}

export async function renderIngest(root: HTMLElement): Promise<void> {
  clear(root);
  const [sources, letters] = await Promise.all([
    get<any[]>('/ingest/sources').catch(() => null),
    get<{ total: number; letters: any[] }>('/ingest/deadletters?limit=100').catch(() => null),
  ]);
  root.append(h('h2', {}, t('Ingest sources')));
  if (!sources) {
    root.append(h('p', {}, t('Ingestion is not enabled on this server.')));
    return;
  }
  root.append(
    h(
      'table',
      {},
      h('caption', { class: 'sr-only' }, t('Ingest sources')),
      h('thead', {}, h('tr', {}, ...[t('Source'), t('Format'), t('Payloads'), t('Records'), t('Written'), t('Rejected')].map((c) => h('th', { scope: 'col' }, c)))),
      h(
        'tbody',
        {},
        ...sources.map((s) =>
          h(
            'tr',
            {},
            h('th', { scope: 'row' }, s.source),
            h('td', {}, s.format),
            h('td', {}, fmtNum(s.payloads, 0)),
            h('td', {}, fmtNum(s.records, 0)),
            h('td', {}, fmtNum(s.written, 0)),
            h('td', {}, Object.entries(s.rejected ?? {}).map(([k, v]) => `${k}: ${v}`).join(', ') || '0'),
          ),
        ),
      ),
    ),
    h('h2', {}, t('Dead letters')),
  );
  if (!letters || letters.total === 0) {
    root.append(h('p', {}, t('No dead letters.')));
    return;
  }
  root.append(
    h('p', {}, t('{n} dead letters; the first 100:', { n: letters.total })),
    h(
      'button',
      {
        type: 'button',
        class: 'primary',
        onclick: async () => {
          try {
            const r = await post('/ingest/deadletters/replay', {});
            announce(t('{ok} replayed, {failed} failed.', { ok: r.replayed, failed: r.failed }));
            await renderIngest(root);
          } catch (e) {
            announce(String(e), 'error');
          }
        },
      },
      t('Replay all'),
    ),
    h(
      'table',
      {},
      h('caption', { class: 'sr-only' }, t('Dead letters')),
      h('thead', {}, h('tr', {}, ...[t('Id'), t('Source'), t('When'), t('Reason'), t('Message')].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, ...letters.letters.map((l) => h('tr', {}, h('td', {}, String(l.id)), h('td', {}, l.source), h('td', {}, fmtTime(l.at)), h('td', {}, l.reason), h('td', {}, l.message)))),
    ),
  );
}

export async function renderGovernance(root: HTMLElement): Promise<void> {
  clear(root);
  const [datasets, audit] = await Promise.all([
    get<any[]>('/platform/v1/datasets').catch((e) => e),
    get<any>('/platform/v1/audit').catch((e) => e),
  ]);
  root.append(h('h2', {}, t('Data catalogue')));
  if (datasets instanceof Error) root.append(h('p', {}, t('Not available: {why}', { why: datasets.message })));
  else if (datasets.length === 0) root.append(h('p', {}, t('No datasets are published yet.')));
  else
    root.append(
      h(
        'table',
        {},
        h('caption', { class: 'sr-only' }, t('Data catalogue')),
        h('thead', {}, h('tr', {}, ...[t('Dataset'), t('Title'), t('Classification'), t('Access')].map((c) => h('th', { scope: 'col' }, c)))),
        h(
          'tbody',
          {},
          ...datasets.map((d: any) =>
            h('tr', {}, h('th', { scope: 'row' }, d.id ?? ''), h('td', {}, typeof d.title === 'string' ? d.title : JSON.stringify(d.title ?? '')), h('td', {}, d.classification ?? d.level ?? '—'), h('td', {}, d.accessRights ?? d.access ?? '—')),
          ),
        ),
      ),
    );
  root.append(h('h2', {}, t('Audit log')));
  if (audit instanceof Error) {
    root.append(h('p', {}, t('Not available: {why}', { why: audit.message })));
    return;
  }
  const status = h('p', { 'aria-live': 'polite', id: 'audit-status' }, t('Verifying…'));
  root.append(h('p', {}, t('{n} entries.', { n: audit.size ?? 0 })), status, h('pre', { class: 'checkpoint' }, String(audit.checkpoint ?? '')));
  const v = await verifyAudit(audit).catch((e) => ({ ok: false, detail: String(e) }));
  status.textContent = v.ok ? `✔ ${t('Verified')}: ${v.detail}` : `✖ ${t('Not verified')}: ${v.detail}`;
  status.className = v.ok ? 'ok' : 'error';
}

