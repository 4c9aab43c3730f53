// The incident queue: filters; acknowledge, dispatch, comment, attach, resolve and the
// other moves the lifecycle allows; the tasks of a cross-department request; the
// citizen's Open311 view of the same case. Live: changes arrive on the incident feed.

import { ApiError, get, post } from './api';
import { SEVERITIES, SEVERITY_COLOR, SEVERITY_LETTER, shapeSvg } from './classify';
import { announce, clear, h } from './dom';
import { fmtTime, t } from './i18n';
import { city, type Incident, isOpen, MOVES } from './state';
import { replay, shownIncidents } from './replay';

const STATUSES = Object.keys(MOVES);
const NEEDS_REASON = new Set(['on_hold', 'reopened', 'cancelled', 'duplicate']);

export class IncidentQueue {
  private filter = { status: 'open', severity: '', department: '', text: '' };
  private selected: string | null = null;
  private list = h('div', { class: 'queue-list' });
  private detail = h('section', { class: 'queue-detail', 'aria-label': t('Incident') });
  private off: () => void;

  constructor(private root: HTMLElement) {
    this.off = city.on('incidents', () => this.render());
    this.render();
  }

  destroy(): void {
    this.off();
  }

  select(id: string): void {
    this.selected = id;
    this.render();
    (this.detail.querySelector('h2') as HTMLElement | null)?.focus();
  }

  private filtered(): Incident[] {
    const f = this.filter;
    const text = f.text.toLowerCase();
    return shownIncidents()
      .filter((i) => (f.status === 'open' ? isOpen(i.status) : f.status === 'all' || !f.status ? true : i.status === f.status))
      .filter((i) => !f.severity || i.severity === f.severity)
      .filter((i) => !f.department || (i.department ?? '') === f.department)
      .filter((i) => !text || i.title.toLowerCase().includes(text) || i.id.toLowerCase().includes(text) || i.category.includes(text))
      .sort((a, b) => SEVERITIES.indexOf(a.severity as any) - SEVERITIES.indexOf(b.severity as any) || b.openedAt.localeCompare(a.openedAt));
  }

  render(): void {
    const active = document.activeElement as HTMLElement | null;
    const activeId = active?.id;
    clear(this.root);
    const departments = [...new Set([...city.incidents.values()].map((i) => i.department ?? ''))].filter(Boolean).sort();
    const sel = (id: string, label: string, value: string, options: [string, string][], set: (v: string) => void) =>
      h(
        'div',
        { class: 'field' },
        h('label', { for: id }, label),
        h(
          'select',
          { id, onchange: (e: Event) => { set((e.target as HTMLSelectElement).value); this.render(); } },
          ...options.map(([v, l]) => h('option', { value: v, selected: v === value }, l)),
        ),
      );
    const items = this.filtered();
    this.root.append(
      h(
        'form',
        { class: 'filters', role: 'search', 'aria-label': t('Incident filters'), onsubmit: (e: Event) => e.preventDefault() },
        sel('f-status', t('Status'), this.filter.status, [['open', t('open')], ['all', t('all')], ...STATUSES.map((s) => [s, t(s)] as [string, string])], (v) => (this.filter.status = v)),
        sel('f-severity', t('Severity'), this.filter.severity, [['', t('any')], ...SEVERITIES.map((s) => [s, t(s)] as [string, string])], (v) => (this.filter.severity = v)),
        sel('f-department', t('Department'), this.filter.department, [['', t('any')], ...departments.map((d) => [d, d] as [string, string])], (v) => (this.filter.department = v)),
        h(
          'div',
          { class: 'field' },
          h('label', { for: 'f-text' }, t('Search')),
          h('input', { id: 'f-text', type: 'search', value: this.filter.text, oninput: (e: Event) => { this.filter.text = (e.target as HTMLInputElement).value; this.renderList(); } }),
        ),
      ),
      h('div', { class: 'queue' }, this.list, this.detail),
    );
    this.renderList(items);
    this.renderDetail();
    if (activeId) (document.getElementById(activeId) as HTMLElement | null)?.focus();
  }

  private renderList(items = this.filtered()): void {
    clear(this.list);
    this.list.append(
      h('p', { class: 'muted', 'aria-live': 'polite' }, t('{n} incidents', { n: items.length }) + (replay.active ? ` · ${t('as at {at}', { at: fmtTime(replay.at) })}` : '')),
      h(
        'table',
        { class: 'incidents' },
        h('caption', { class: 'sr-only' }, t('Incidents')),
        h('thead', {}, h('tr', {}, ...[t('Severity'), t('Incident'), t('Status'), t('Department'), t('Opened')].map((c) => h('th', { scope: 'col' }, c)))),
        h(
          'tbody',
          {},
          ...items.map((i) =>
            h(
              'tr',
              { class: i.id === this.selected ? 'selected' : '', 'data-incident': i.id },
              h('td', {}, h('span', { html: shapeSvg('bad', SEVERITY_COLOR[i.severity] ?? '#777', SEVERITY_LETTER[i.severity] ?? '?') }), ` ${t(i.severity)}`),
              h('td', {}, h('button', { type: 'button', class: 'link', id: `open-${i.id.split(':').pop()}`, onclick: () => this.select(i.id) }, i.title)),
              h('td', {}, h('span', { class: `status status-${i.status}` }, t(i.status)), i.sla.ackBreachedAt || i.sla.resolveBreachedAt ? h('span', { class: 'breach' }, ` ⚠ ${t('SLA breached')}`) : null),
              h('td', {}, i.department ?? '—'),
              h('td', {}, fmtTime(i.openedAt)),
            ),
          ),
        ),
      ),
    );
  }

  private renderDetail(): void {
    clear(this.detail);
    const i = this.selected ? shownIncidents().find((x) => x.id === this.selected) : undefined;
    if (!i) {
      this.detail.append(h('p', { class: 'muted' }, t('Select an incident to see and act on it.')));
      return;
    }
    const n = i.id.split(':').pop();
    this.detail.append(
      h('h2', { tabindex: '-1' }, i.title),
      h(
        'dl',
        { class: 'facts' },
        ...(
          [
            [t('Status'), t(i.status)],
            [t('Severity'), t(i.severity)],
            [t('Category'), i.category],
            [t('Department'), i.department ?? '—'],
            [t('Unit'), i.unit ?? '—'],
            [t('Opened'), fmtTime(i.openedAt)],
            [t('Acknowledged'), fmtTime(i.acknowledgedAt)],
            [t('Resolved'), fmtTime(i.resolvedAt)],
            [t('Mode'), t(i.sla.mode)],
            [t('Entities'), i.entities.join(', ') || '—'],
          ] as [string, string][]
        ).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
      ),
    );
    if (!replay.active) this.detail.append(this.actions(i));
    if (i.tasks?.length) {
      this.detail.append(
        h('h3', {}, t('Tasks')),
        h(
          'ol',
          { class: 'tasks', start: '0' },
          ...i.tasks.map((task) =>
            h(
              'li',
              {},
              `${task.department}: ${task.title} — `,
              h('strong', {}, t(task.status)),
              task.after?.length ? ` (${t('after {list}', { list: task.after.join(', ') })})` : '',
              ...(replay.active || ['done', 'cancelled'].includes(task.status)
                ? []
                : (task.status === 'open' ? ['in_progress', 'done', 'cancelled'] : ['done', 'cancelled']).map((s) =>
                    h(
                      'button',
                      {
                        type: 'button',
                        class: 'small',
                        'data-task': String(task.n),
                        'data-status': s,
                        'aria-label': t('Task {n} ({title}): {status}', { n: task.n, title: task.title, status: t(s) }),
                        onclick: () => this.act(`/platform/v1/incidents/${encodeURIComponent(i.id)}/tasks/${task.n}`, { status: s }),
                      },
                      t(s),
                    ),
                  )),
            ),
          ),
        ),
      );
    }
    if (i.attachments?.length) {
      this.detail.append(
        h('h3', {}, t('Attachments')),
        h('ul', {}, ...i.attachments.map((a) => h('li', {}, h('a', { href: a.url, rel: 'noopener noreferrer', target: '_blank' }, a.name ?? a.url), ` — ${a.by}, ${fmtTime(a.at)}`))),
      );
    }
    this.detail.append(
      h('h3', {}, t('History')),
      h(
        'ol',
        { class: 'history' },
        ...i.history.map((e) =>
          h('li', {}, h('time', { datetime: e.at }, fmtTime(e.at)), ` · ${e.by} · ${t(e.action)}`, e.to ? ` → ${t(e.to)}` : '', e.reason ? ` — ${e.reason}` : '', e.note ? ` — ${e.note}` : ''),
        ),
      ),
    );
    if (i.request) {
      const box = h('div', { class: 'open311' }, h('p', { class: 'muted' }, t('Loading…')));
      this.detail.append(h('h3', {}, t("The citizen's view (Open311)")), box);
      get(`/open311/v2/requests/${n}.json`)
        .then((r: any[]) => {
          const x = r[0] ?? {};
          clear(box);
          box.append(
            h(
              'dl',
              { class: 'facts' },
              ...(
                [
                  [t('Request'), x.service_request_id],
                  [t('Service'), x.service_name],
                  [t('Status'), x.status],
                  [t('Notes'), x.status_notes || '—'],
                  [t('Agency'), x.agency_responsible || '—'],
                  [t('Address'), x.address || '—'],
                  [t('Requested'), fmtTime(x.requested_datetime)],
                  [t('Updated'), fmtTime(x.updated_datetime)],
                ] as [string, string][]
              ).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v ?? '—'))]),
            ),
          );
        })
        .catch((e) => {
          clear(box);
          box.append(h('p', { class: 'error' }, String(e)));
        });
    }
  }

  private actions(i: Incident): HTMLElement {
    const id = encodeURIComponent(i.id);
    const reason = h('input', { id: 'act-reason', type: 'text', autocomplete: 'off' });
    const dept = h('input', { id: 'act-department', type: 'text', value: i.department ?? '', autocomplete: 'off' });
    const unit = h('input', { id: 'act-unit', type: 'text', value: i.unit ?? '', autocomplete: 'off' });
    const comment = h('textarea', { id: 'act-comment', rows: '2' });
    const url = h('input', { id: 'act-url', type: 'url', placeholder: 'https://', autocomplete: 'off' });
    const moves = MOVES[i.status] ?? [];
    return h(
      'section',
      { class: 'actions-box', 'aria-label': t('Actions') },
      h('h3', {}, t('Actions')),
      h(
        'div',
        { class: 'row' },
        h('div', { class: 'field' }, h('label', { for: 'act-department' }, t('Department')), dept),
        h('div', { class: 'field' }, h('label', { for: 'act-unit' }, t('Unit')), unit),
        h('div', { class: 'field' }, h('label', { for: 'act-reason' }, t('Reason')), reason),
      ),
      h(
        'div',
        { class: 'row buttons' },
        ...moves
          .filter((m) => m !== 'duplicate')
          .map((m) =>
            h(
              'button',
              {
                type: 'button',
                class: m === 'cancelled' ? 'danger' : 'primary',
                'data-move': m,
                onclick: () => {
                  const body: Record<string, string> = { to: m };
                  if (reason.value.trim()) body.reason = reason.value.trim();
                  if (dept.value.trim() && dept.value.trim() !== (i.department ?? '')) body.department = dept.value.trim();
                  if (unit.value.trim() && unit.value.trim() !== (i.unit ?? '')) body.unit = unit.value.trim();
                  if (m === 'dispatched' && !body.department && i.department) body.department = i.department;
                  if (NEEDS_REASON.has(m) && !body.reason) {
                    announce(t('Say why in Reason first.'), 'error');
                    reason.focus();
                    return;
                  }
                  void this.act(`/platform/v1/incidents/${id}/transitions`, body);
                },
              },
              t(`move:${m}`),
            ),
          ),
      ),
      h(
        'form',
        {
          class: 'row',
          onsubmit: (e: Event) => {
            e.preventDefault();
            if (comment.value.trim()) void this.act(`/platform/v1/incidents/${id}/comments`, { text: comment.value.trim() });
          },
        },
        h('div', { class: 'field grow' }, h('label', { for: 'act-comment' }, t('Comment')), comment),
        h('button', { type: 'submit', class: 'secondary' }, t('Add comment')),
      ),
      h(
        'form',
        {
          class: 'row',
          onsubmit: (e: Event) => {
            e.preventDefault();
            if (url.value.trim()) void this.act(`/platform/v1/incidents/${id}/attachments`, { url: url.value.trim() });
          },
        },
        h('div', { class: 'field grow' }, h('label', { for: 'act-url' }, t('Attach a link')), url),
        h('button', { type: 'submit', class: 'secondary' }, t('Attach')),
      ),
    );
  }

  private async act(path: string, body: unknown): Promise<void> {
    try {
      const i = await post<Incident>(path, body);
      city.incidents.set(i.id, i);
      announce(t('Incident {id}: {status}', { id: i.id.split(':').pop() ?? '', status: t(i.status) }));
      city.emit('incidents');
    } catch (e) {
      const msg = e instanceof ApiError ? `${e.message}${e.body?.allowed ? ` (${t('allowed')}: ${e.body.allowed.map((a: string) => t(a)).join(', ')})` : ''}` : String(e);
      announce(msg, 'error');
    }
  }
}
