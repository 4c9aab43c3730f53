// The console's shell: views by URL hash (#/map, #/incidents, #/rules, #/ingest,
// #/governance), the language and large-text switches, signing in with an API key, the
// entity list beside the map (the keyboard and screen-reader way to every entity), and
// the time-travel bar.

import './style.css';
import { ApiError, apiKey, get, setApiKey } from './api';
import { KINDS, KIND_BY_TYPE, LEVEL_COLOR, shapeSvg } from './classify';
import { announce, clear, h } from './dom';
import { currentLang, fmtTime, onLangChange, setLang, t } from './i18n';
import { CityMap } from './map';
import { Kpis } from './kpi';
import { renderDetail } from './detail';
import { IncidentQueue } from './incidents';
import { renderGovernance, renderIngest, renderModes, renderRules } from './admin';
import { city } from './state';
import { replay, shownEntities } from './replay';

const VIEWS = [
  ['map', 'City map'],
  ['incidents', 'Incidents'],
  ['rules', 'Rules'],
  ['ingest', 'Ingest'],
  ['governance', 'Governance'],
] as const;

const LARGE = 'citybrain.large';
const controller = new AbortController();
let cityMap: CityMap | null = null;
let queue: IncidentQueue | null = null;
const mapRoot = h('div', { class: 'map-view' });

function view(): string {
  const v = location.hash.replace(/^#\/?/, '').split('/')[0];
  return VIEWS.some(([k]) => k === v) ? v : 'map';
}

function renderNav(): void {
  const nav = document.getElementById('nav')!;
  clear(nav);
  nav.append(
    h(
      'ul',
      {},
      ...VIEWS.map(([k, label]) =>
        h('li', {}, h('a', { href: `#/${k}`, 'aria-current': view() === k ? 'page' : undefined }, t(label))),
      ),
    ),
  );
  const tools = document.getElementById('tools')!;
  clear(tools);
  const large = document.documentElement.classList.contains('large');
  tools.append(
    h('span', { class: 'feed', id: 'feed-status', 'aria-live': 'off' }, feedText()),
    h('button', { type: 'button', class: 'secondary', 'aria-pressed': large ? 'true' : 'false', onclick: toggleLarge }, t('Large text')),
    h('button', { type: 'button', class: 'secondary', lang: currentLang() === 'en' ? 'zh-CN' : 'en', onclick: () => setLang(currentLang() === 'en' ? 'zh' : 'en') }, currentLang() === 'en' ? '中文' : 'English'),
    h('button', { type: 'button', class: 'secondary', onclick: signIn }, apiKey() ? t('Sign out') : t('Sign in')),
  );
}

function feedText(): string {
  if (replay.active) return `⏸ ${t('Replay')}`;
  return city.feed.entities === 'live' ? `● ${t('Live')}` : `○ ${t(city.feed.entities)}`;
}

function toggleLarge(): void {
  const on = !document.documentElement.classList.contains('large');
  document.documentElement.classList.toggle('large', on);
  localStorage.setItem(LARGE, on ? '1' : '');
  renderNav();
  cityMap?.map.resize();
}

async function signIn(): Promise<void> {
  if (apiKey()) {
    setApiKey(null);
    location.reload();
    return;
  }
  const input = h('input', { id: 'key', type: 'password', autocomplete: 'off', required: true });
  const err = h('p', { class: 'error', role: 'alert' });
  const dlg = h(
    'dialog',
    { class: 'dialog', 'aria-labelledby': 'signin-title' },
    h(
      'form',
      {
        method: 'dialog',
        onsubmit: async (e: Event) => {
          e.preventDefault();
          setApiKey(input.value.trim());
          try {
            await get('/platform/v1/mode');
            dlg.close();
            dlg.remove();
            location.reload();
          } catch (x) {
            setApiKey(null);
            err.textContent = t('This key was refused: {why}', { why: String(x) });
          }
        },
      },
      h('h2', { id: 'signin-title' }, t('Sign in')),
      h('p', {}, t('Paste an API key (citybrain keys create) or an access token from your identity provider. It is kept for this tab only.')),
      h('label', { for: 'key' }, t('API key or token')),
      input,
      err,
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', onclick: () => { dlg.close(); dlg.remove(); } }, t('Cancel')), h('button', { type: 'submit', class: 'primary' }, t('Sign in'))),
    ),
  );
  document.body.append(dlg);
  dlg.showModal();
  input.focus();
}

/** The map view: map, KPIs, layers and legend, mode, entity list and detail, replay. */
function buildMapView(): void {
  const mapEl = h('div', { id: 'map', class: 'map' });
  const kpis = h('section', { class: 'panel', id: 'kpis', 'aria-label': t('Key indicators') });
  const modes = h('section', { class: 'panel', id: 'modes', 'aria-label': t('Mode') });
  const layers = h('section', { class: 'panel', id: 'layers', 'aria-label': t('Layers') });
  const list = h('section', { class: 'panel', id: 'entity-list', 'aria-label': t('Entities') });
  const detail = h('section', { class: 'panel', id: 'detail', 'aria-label': t('Entity detail'), hidden: true });
  const bar = h('section', { class: 'replay', id: 'replay', 'aria-label': t('Time travel') });
  clear(mapRoot);
  mapRoot.append(h('div', { class: 'map-col' }, mapEl, bar), h('aside', { class: 'side' }, kpis, modes, detail, layers, list));
  const open = (id: string) => {
    detail.hidden = false;
    void renderDetail(detail, id, () => {
      detail.hidden = true;
      (document.getElementById('entity-filter') as HTMLElement | null)?.focus();
    });
    cityMap?.flyTo(id);
  };
  cityMap = new CityMap(mapEl, (id) => {
    if (id.includes(':Incident:')) {
      location.hash = '#/incidents';
      setTimeout(() => queue?.select(id), 0);
    } else open(id);
  });
  new Kpis(kpis);
  const drawModes = () => renderModes(modes);
  city.on('mode', drawModes);
  drawModes();
  // Layers and legend.
  const drawLayers = () => {
    clear(layers);
    layers.append(
      h('h2', { class: 'panel-title' }, t('Layers')),
      h(
        'ul',
        { class: 'plain layers' },
        ...KINDS.map((k) => {
          const id = `layer-${k.type}`;
          return h(
            'li',
            {},
            h('input', { type: 'checkbox', id, checked: cityMap!.enabled.has(k.type), onchange: (e: Event) => { cityMap!.setEnabled(k.type, (e.target as HTMLInputElement).checked); drawList(); } }),
            h('label', { for: id }, h('span', { html: shapeSvg('good', LEVEL_COLOR.good, k.letter) }), ` ${t(k.label)}`),
          );
        }),
      ),
      h(
        'p',
        { class: 'legend' },
        h('span', { html: shapeSvg('good') }), ` ${t('normal')}  `,
        h('span', { html: shapeSvg('warn') }), ` ${t('warning')}  `,
        h('span', { html: shapeSvg('bad') }), ` ${t('alert')}  `,
        h('span', { html: shapeSvg('none') }), ` ${t('no data')}`,
      ),
      h('p', { class: 'legend muted' }, t('Roads: solid = flowing, dashed = slow, dotted = congested. Hatched areas are in emergency mode.')),
    );
  };
  drawLayers();
  // The entity list: every shown entity reachable by keyboard and screen readers.
  let filter = '';
  const input = h('input', { id: 'entity-filter', type: 'search', placeholder: t('name, id or state'), oninput: (e: Event) => { filter = (e.target as HTMLInputElement).value.toLowerCase(); drawRows(); } });
  const rows = h('tbody', {});
  const count = h('p', { class: 'muted', 'aria-live': 'polite' });
  const drawRows = () => {
    clear(rows);
    const items: [any, string, string][] = [];
    for (const e of shownEntities().values()) {
      const k = KIND_BY_TYPE.get(e.type);
      if (!k || !cityMap!.enabled.has(e.type) || !e.location) continue;
      const name = String(e.name ?? e.id.split(':').pop());
      const state = k.describe(e);
      if (filter && !`${name} ${e.id} ${state}`.toLowerCase().includes(filter)) continue;
      items.push([e, name, state]);
    }
    const rank = { bad: 0, warn: 1, none: 2, good: 3 } as Record<string, number>;
    items.sort((a, b) => rank[KIND_BY_TYPE.get(a[0].type)!.level(a[0])] - rank[KIND_BY_TYPE.get(b[0].type)!.level(b[0])] || a[1].localeCompare(b[1]));
    count.textContent = t('{n} entities; the first 100, most urgent first.', { n: items.length });
    for (const [e, name, state] of items.slice(0, 100)) {
      const k = KIND_BY_TYPE.get(e.type)!;
      const level = k.level(e);
      rows.append(
        h(
          'tr',
          {},
          h('td', {}, h('span', { html: shapeSvg(level, undefined, k.letter) }), h('span', { class: 'sr-only' }, t(k.label))),
          h('td', {}, h('button', { type: 'button', class: 'link', 'data-entity': e.id, onclick: () => open(e.id) }, name)),
          h('td', {}, state),
        ),
      );
    }
  };
  const drawList = () => {
    clear(list);
    list.append(
      h('h2', { class: 'panel-title' }, t('Entities')),
      h('label', { for: 'entity-filter' }, t('Find')),
      input,
      count,
      h('table', { class: 'entities' }, h('caption', { class: 'sr-only' }, t('Entities on the map')), h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('Kind')), h('th', { scope: 'col' }, t('Name')), h('th', { scope: 'col' }, t('State')))), rows),
    );
    drawRows();
  };
  drawList();
  // The list follows changes at most every 2 s (leading edge: the first load shows at
  // once), and never while the user is in it (rows would move under the focus).
  let listTimer: number | null = null;
  let listDrawn = 0;
  const refreshList = () => {
    if (list.contains(document.activeElement) && document.activeElement !== input) return;
    listDrawn = performance.now();
    drawRows();
  };
  city.on('entities', () => {
    if (listTimer !== null) return;
    const wait = Math.max(0, 2000 - (performance.now() - listDrawn));
    if (wait === 0) refreshList();
    else
      listTimer = window.setTimeout(() => {
        listTimer = null;
        refreshList();
      }, wait);
  });
  buildReplay(bar);
}

function buildReplay(bar: HTMLElement): void {
  let playing: number | null = null;
  const draw = () => {
    clear(bar);
    if (!replay.active) {
      const win = h('select', { id: 'replay-window' }, ...[60, 360, 1440].map((m) => h('option', { value: String(m) }, t('last {n} h', { n: m / 60 }))));
      bar.append(
        h('span', { class: 'live-dot' }, `● ${t('Live')}`),
        h('label', { for: 'replay-window' }, t('Replay')),
        win,
        h(
          'button',
          {
            type: 'button',
            class: 'primary',
            id: 'replay-start',
            disabled: replay.loading,
            onclick: async () => {
              announce(t('Loading history…'));
              const n = await replay.load(Number(win.value), controller.signal);
              announce(t('Replaying from {at}: {n} values loaded.', { at: fmtTime(replay.at), n }));
              renderNav();
              draw();
              (document.getElementById('replay-slider') as HTMLElement | null)?.focus();
            },
          },
          t('Start replay'),
        ),
      );
      return;
    }
    const slider = h('input', {
      id: 'replay-slider',
      type: 'range',
      min: String(replay.from),
      max: String(replay.to),
      step: '60000',
      value: String(replay.at),
      'aria-valuetext': fmtTime(replay.at),
      oninput: (e: Event) => {
        replay.seek(Number((e.target as HTMLInputElement).value));
        label.textContent = fmtTime(replay.at);
        slider.setAttribute('aria-valuetext', fmtTime(replay.at));
      },
    });
    const label = h('output', { for: 'replay-slider', id: 'replay-time' }, fmtTime(replay.at));
    const speed = h('select', { id: 'replay-speed' }, ...[1, 10, 60, 600].map((s) => h('option', { value: String(s), selected: s === 60 }, `×${s}`)));
    const play = h('button', { type: 'button', class: 'primary', id: 'replay-play', 'aria-pressed': playing ? 'true' : 'false' }, playing ? t('Pause') : t('Play'));
    play.addEventListener('click', () => {
      if (playing !== null) {
        clearInterval(playing);
        playing = null;
      } else {
        playing = window.setInterval(() => {
          const next = replay.at + Number(speed.value) * 1000;
          if (next >= replay.to) {
            clearInterval(playing!);
            playing = null;
            draw();
          }
          replay.seek(next);
          slider.value = String(replay.at);
          label.textContent = fmtTime(replay.at);
          slider.setAttribute('aria-valuetext', fmtTime(replay.at));
        }, 1000);
      }
      play.textContent = playing ? t('Pause') : t('Play');
      play.setAttribute('aria-pressed', playing ? 'true' : 'false');
    });
    bar.append(
      h('span', { class: 'replay-dot' }, `⏸ ${t('Replay')}`),
      h('label', { for: 'replay-slider' }, t('Time')),
      slider,
      label,
      h('label', { for: 'replay-speed' }, t('Speed')),
      speed,
      play,
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          id: 'replay-stop',
          onclick: () => {
            if (playing !== null) clearInterval(playing);
            playing = null;
            replay.stop();
            announce(t('Back to live.'));
            renderNav();
            draw();
          },
        },
        t('Back to live'),
      ),
    );
  };
  draw();
}

function route(): void {
  const main = document.getElementById('main')!;
  const v = view();
  renderNav();
  queue?.destroy();
  queue = null;
  if (v === 'map') {
    if (!cityMap) buildMapView();
    clear(main);
    main.append(mapRoot);
    cityMap?.map.resize();
  } else {
    clear(main);
    const section = h('div', { class: 'page' });
    main.append(section);
    if (v === 'incidents') queue = new IncidentQueue(section);
    else if (v === 'rules') void renderRules(section);
    else if (v === 'ingest') void renderIngest(section);
    else void renderGovernance(section);
  }
  document.title = `${t(VIEWS.find(([k]) => k === v)![1])} · citybrain`;
}

if (localStorage.getItem(LARGE)) document.documentElement.classList.add('large');
window.addEventListener('hashchange', () => {
  route();
  document.getElementById('main')?.focus();
});
onLangChange(() => {
  const v = view();
  if (v === 'map') {
    // Rebuild the map view's panels in the new language; the map itself stays.
    cityMap?.map.remove();
    cityMap = null;
  }
  route();
});
city.on('feed', () => {
  const s = document.getElementById('feed-status');
  if (s) s.textContent = feedText();
});
route();
// A server with authentication on shows anonymous callers little or nothing: ask them
// to sign in rather than leave an empty map.
if (!apiKey()) {
  get('/platform/v1/mode').catch((e) => {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
      announce(t('This server needs you to sign in.'));
      void signIn();
    }
  });
}
const t0 = performance.now();
city
  .start(controller.signal)
  .then(async () => {
    await cityMap?.ready;
    document.body.dataset.ready = 'true';
    document.body.dataset.loadMs = String(Math.round(performance.now() - t0));
  })
  .catch((e) => announce(String(e), 'error'));

/** Frame times for the browser tests: requestAnimationFrame intervals over `ms`. */
(window as any).citybrainFrames = (ms: number) =>
  new Promise<number[]>((resolve) => {
    const out: number[] = [];
    let last = performance.now();
    const end = last + ms;
    const step = (now: number) => {
      out.push(now - last);
      last = now;
      if (now < end) requestAnimationFrame(step);
      else resolve(out);
    };
    requestAnimationFrame(step);
  });

// The skip link moves focus without changing the view (views live in the URL hash).
document.querySelector('.skip')?.addEventListener('click', (e) => {
  e.preventDefault();
  document.getElementById('main')?.focus();
});
