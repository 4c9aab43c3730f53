// What the browser tests share: a citybrain server of their own (a fresh data
// directory, free ports), Debian's Chromium driven by playwright-core, axe-core, and
// screenshots saved as test artefacts under console/test-results/.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, '..', '..');
export const results = join(here, '..', 'test-results');
mkdirSync(results, { recursive: true });

/** The server under test: CONSOLE_TEST_BIN (relative to the repository's root; no
 * fallback when it is set), else the newer of the release and debug builds. (Not a
 * CITYBRAIN_* name: the server refuses those it does not know.) */
export function binary() {
  if (process.env.CONSOLE_TEST_BIN) {
    const p = resolve(root, process.env.CONSOLE_TEST_BIN);
    if (!existsSync(p)) throw new Error(`CONSOLE_TEST_BIN=${p}: no such file (run cargo build)`);
    return p;
  }
  const found = [join(root, 'target/release/citybrain'), join(root, 'target/debug/citybrain')]
    .filter((p) => existsSync(p))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (found.length === 0) throw new Error('no citybrain binary: run `cargo build` (or set CONSOLE_TEST_BIN)');
  return found[0];
}

export function chromiumPath() {
  return process.env.CHROMIUM ?? '/usr/bin/chromium';
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** Starts `citybrain serve` (with the demo district unless `demo: false`). */
export async function startServer({ demo = true, twin = false, env = {}, auth = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'citybrain-console-'));
  // With `auth`, the first administrator's key (authentication, policies and the audit
  // log are then on).
  let adminKey = null;
  if (auth) {
    const { execFileSync } = await import('node:child_process');
    adminKey = execFileSync(binary(), ['bootstrap', '--data-dir', join(dir, 'data')], { cwd: root, env: { PATH: process.env.PATH } })
      .toString()
      .trim()
      .split('\n')
      .pop();
  }
  const port = await freePort();
  const mqtt = await freePort();
  const args = ['serve', '--data-dir', join(dir, 'data'), '--listen', `127.0.0.1:${port}`, '--mqtt-listen', `127.0.0.1:${mqtt}`];
  if (demo) args.push('--demo');
  const proc = spawn(binary(), args, {
    cwd: root,
    env: { ...process.env, CITYBRAIN_TWIN__ENABLED: twin ? 'true' : 'false', RUST_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stdout.on('data', (d) => (log += d));
  proc.stderr.on('data', (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const r = await fetch(`${url}/health`);
      if (r.ok) break;
    } catch {
      /* not yet */
    }
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`citybrain did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    adminKey,
    log: () => log,
    async api(method, path, body) {
      const headers = body === undefined ? {} : { 'Content-Type': 'application/json' };
      if (adminKey) headers.Authorization = `Bearer ${adminKey}`;
      const r = await fetch(url + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await r.text();
      return { status: r.status, body: text ? JSON.parse(text) : null };
    },
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.on('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A server (options as for startServer) and a browser for the tests of one file:
 * started before them (then `prepare(server)`, to load data), stopped after. The tests
 * read `env.server` and `env.browser` once they run.
 */
export function serverAndBrowser(options, prepare) {
  const env = {};
  before(async () => {
    env.server = await startServer(options);
    env.browser = await startBrowser();
    if (prepare) await prepare(env.server);
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.stop();
  });
  return env;
}

/** Debian's Chromium, headless, with the flags a closed network needs. */
export async function startBrowser() {
  return chromium.launch({
    executablePath: chromiumPath(),
    args: [
      '--no-sandbox',
      '--disable-gpu-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
      '--no-first-run',
      // WebGL in software (SwiftShader): there is no GPU on the test machines.
      '--enable-unsafe-swiftshader',
    ],
  });
}

/** A page that records console errors, failed requests and requests leaving the server. */
export async function openPage(browser, url, { viewport = { width: 1400, height: 900 }, lang = 'en' } = {}) {
  // bypassCSP: axe-core is injected by the test, not served by citybrain.
  const context = await browser.newContext({ viewport, bypassCSP: true, locale: lang === 'zh' ? 'zh-CN' : 'en-GB' });
  await context.addInitScript((l) => localStorage.setItem('citybrain.lang', l), lang);
  const page = await context.newPage();
  const problems = [];
  const origin = new URL(url).origin;
  page.on('console', (m) => {
    // Refused requests are judged below, by their address.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console error: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() < 400) return;
    // Without authentication there is no audit log (404), by design: the view says so.
    if (r.status() === 404 && new URL(r.url()).pathname === '/platform/v1/audit') return;
    problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    // Streams are cut when a page closes or reloads: not a failure of the page.
    if (!/\/platform\/v1\/(live|events\/stream)/.test(r.url())) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith('data:') && !u.startsWith('blob:')) problems.push(`request outside the server: ${u}`);
  });
  const t0 = Date.now();
  await page.goto(url);
  await page.waitForSelector('body[data-ready=true]', { state: 'attached', timeout: 30_000 });
  const loadMs = Date.now() - t0;
  return { page, context, problems, loadMs };
}

/** Runs axe-core with the WCAG 2.0/2.1 A and AA rules; returns the violations. */
export async function axe(page, name) {
  await page.addScriptTag({ path: join(here, '..', 'node_modules', 'axe-core', 'axe.min.js') });
  const r = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }),
  );
  await page.screenshot({ path: join(results, `${name}.png`) });
  return r.violations.map((v) => `${name}: ${v.id} (${v.impact}) ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(' | ')}`);
}

export async function shot(page, name) {
  await page.screenshot({ path: join(results, `${name}.png`) });
}

/** Drawn features of the map's layers (what the user sees, not what was sent). */
export async function rendered(page, layers) {
  return page.evaluate((layers) => window.citybrainMap.queryRenderedFeatures({ layers }).length, layers);
}
