// The public API the console uses: the same NGSI-LD, temporal, platform and live-feed
// endpoints any client can call (nothing here is private to the console).

const KEY = 'citybrain.apiKey';
const TENANT = 'citybrain.tenant';

export function apiKey(): string | null {
  return sessionStorage.getItem(KEY);
}
export function setApiKey(k: string | null): void {
  if (k) sessionStorage.setItem(KEY, k);
  else sessionStorage.removeItem(KEY);
}
export function tenant(): string {
  return localStorage.getItem(TENANT) ?? '';
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public body: any,
  ) {
    super(body?.detail ?? body?.title ?? `HTTP ${status}`);
  }
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { Accept: 'application/json', ...extra };
  const k = apiKey();
  if (k) h['Authorization'] = `Bearer ${k}`;
  const t = tenant();
  if (t) h['NGSILD-Tenant'] = t;
  return h;
}

export interface Answer<T> {
  body: T;
  headers: Headers;
}

export async function call<T = any>(
  method: string,
  path: string,
  body?: unknown,
  signal?: AbortSignal,
): Promise<Answer<T>> {
  const init: RequestInit = { method, headers: headers(), signal };
  if (body !== undefined) {
    init.headers = headers({ 'Content-Type': 'application/json' });
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let parsed: any = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (!r.ok) throw new ApiError(r.status, parsed);
  return { body: parsed as T, headers: r.headers };
}

export const get = <T = any>(path: string, signal?: AbortSignal) =>
  call<T>('GET', path, undefined, signal).then((a) => a.body);
export const post = <T = any>(path: string, body: unknown) => call<T>('POST', path, body).then((a) => a.body);
export const put = <T = any>(path: string, body: unknown) => call<T>('PUT', path, body).then((a) => a.body);

/** The `rel="next"` target of a response's `Link` headers, if any. */
export function nextLink(h: Headers): string | null {
  const link = h.get('Link');
  if (!link) return null;
  for (const part of link.split(/,(?=\s*<)/)) {
    const m = part.match(/<([^>]*)>(.*)/);
    if (m && /rel="?next"?/.test(m[2])) return m[1];
  }
  return null;
}

/** Every item a paged GET answers, following `next` links (1,000 per page). */
async function allPages(path: string | null, signal?: AbortSignal): Promise<any[]> {
  const out: any[] = [];
  while (path) {
    const a: Answer<any[]> = await call<any[]>('GET', path, undefined, signal);
    out.push(...a.body);
    path = nextLink(a.headers);
  }
  return out;
}

/** Every entity a query matches (keyValues unless `format` says otherwise). */
export function queryAll(params: Record<string, string>, signal?: AbortSignal): Promise<any[]> {
  return allPages(`/ngsi-ld/v1/entities?${new URLSearchParams({ limit: '1000', format: 'keyValues', ...params })}`, signal);
}

/**
 * Temporal values of every entity a temporal query matches: entity pages by their
 * `next` links, and within a page the instances beyond the server's cap per answer
 * (206 with `Content-Range`, NGSI-LD 6.3.10) by asking again from the end of that
 * range, for `between` and `after` queries.
 */
export async function temporalAll(params: Record<string, string>, signal?: AbortSignal): Promise<any[]> {
  let path: string | null = `/ngsi-ld/v1/temporal/entities?${new URLSearchParams({ limit: '1000', ...params })}`;
  const out: any[] = [];
  const continues = params.timerel === 'between' || params.timerel === 'after';
  while (path) {
    const a: Answer<any[]> = await call<any[]>('GET', path, undefined, signal);
    const page = a.body;
    let end = continues ? rangeEnd(a.headers) : null;
    for (let rounds = 0; end && rounds < 1000; rounds++) {
      const u = new URL(path, location.origin);
      u.searchParams.set('timeAt', end);
      const more: Answer<any[]> = await call<any[]>('GET', u.pathname + u.search, undefined, signal);
      appendAfter(page, more.body, Date.parse(end));
      const next = rangeEnd(more.headers);
      end = next && next !== end ? next : null;
    }
    out.push(...page);
    path = nextLink(a.headers);
  }
  return out;
}

/** The end of a 206's `Content-Range: date-time <start>-<end>/<size>`. */
function rangeEnd(h: Headers): string | null {
  const m = h.get('Content-Range')?.match(/^date-time\s+(\S+?Z)-(\S+?Z)\//);
  return m ? m[2] : null;
}

/** Adds to `page`'s entities the instances of `more` after `after` (ms): the next
 * part of the same series. */
function appendAfter(page: any[], more: any[], after: number): void {
  const byId = new Map(page.map((e) => [e.id, e]));
  for (const e of more) {
    const into = byId.get(e.id);
    if (!into) continue;
    for (const [k, v] of Object.entries(e)) {
      if (k === 'id' || k === 'type' || k === '@context') continue;
      const from = (Array.isArray(v) ? v : [v]) as any[];
      const to = (Array.isArray(into[k]) ? into[k] : into[k] ? [into[k]] : []) as any[];
      from.forEach((series, i) => {
        for (const key of ['values', 'objects']) {
          if (!Array.isArray(series?.[key])) continue;
          const later = series[key].filter((p: any) => Date.parse(p[1]) > after);
          if (!to[i]) to[i] = { ...series, [key]: [] };
          to[i][key] = [...(to[i][key] ?? []), ...later];
        }
      });
      into[k] = Array.isArray(into[k]) || to.length > 1 ? to : to[0];
    }
  }
}

export interface SseEvent {
  event: string;
  data: any;
}

/**
 * Reads a Server-Sent Events stream with fetch (so that credentials go in headers,
 * which EventSource cannot send). Reports `open` when connected; reconnects after a
 * pause when the stream ends or fails (2 s, doubling to a minute while it keeps
 * failing), and stops for good when the server refuses the caller (401, 403: event
 * `refused`), rather than knocking every few seconds.
 */
export function stream(path: string, onEvent: (e: SseEvent) => void, signal: AbortSignal): void {
  const run = async () => {
    let pause = 2000;
    while (!signal.aborted) {
      try {
        const r = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal });
        if (r.status === 401 || r.status === 403) {
          onEvent({ event: 'refused', data: { status: r.status } });
          return;
        }
        if (!r.ok || !r.body) throw new ApiError(r.status, null);
        pause = 2000;
        onEvent({ event: 'open', data: {} });
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let end: number;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            let event = 'message';
            const data: string[] = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) event = line.slice(6).trim();
              else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            }
            if (data.length === 0) continue;
            try {
              onEvent({ event, data: JSON.parse(data.join('\n')) });
            } catch (err) {
              console.warn('unreadable event', err);
            }
          }
        }
        onEvent({ event: 'disconnected', data: {} });
      } catch (err) {
        if (signal.aborted) return;
        onEvent({ event: 'disconnected', data: { error: String(err) } });
        pause = Math.min(pause * 2, 60_000);
      }
      await new Promise((r) => setTimeout(r, pause));
    }
  };
  void run();
}
