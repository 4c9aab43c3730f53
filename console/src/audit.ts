// Verifies the audit log from the browser: the newest checkpoint's Ed25519 signature
// (C2SP signed note) with the log's verifier key, pinned here on first sight, and an
// RFC 9162 consistency proof from the last checkpoint this browser verified, so that a
// rewritten or shortened log is caught by anyone who looked before.

import { get } from './api';
import { t } from './i18n';

const PIN = 'citybrain.audit.key';
const SEEN = 'citybrain.audit.checkpoint';

const b64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
const eq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

async function nodeHash(l: Uint8Array, r: Uint8Array): Promise<Uint8Array> {
  const buf = new Uint8Array(1 + l.length + r.length);
  buf[0] = 1;
  buf.set(l, 1);
  buf.set(r, 1 + l.length);
  return new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
}

/** RFC 9162, 2.1.4.2: does `proof` show the tree of `first` leaves is a prefix of `second`'s? */
export async function verifyConsistency(first: number, second: number, firstRoot: Uint8Array, secondRoot: Uint8Array, proof: Uint8Array[]): Promise<boolean> {
  if (first === second) return proof.length === 0 && eq(firstRoot, secondRoot);
  if (first === 0 || first > second || proof.length === 0) return false;
  const p = (first & (first - 1)) === 0 ? [firstRoot, ...proof] : [...proof];
  let fn = first - 1;
  let sn = second - 1;
  while (fn & 1) {
    fn >>>= 1;
    sn >>>= 1;
  }
  let fr = p[0];
  let sr = p[0];
  for (const c of p.slice(1)) {
    if (sn === 0) return false;
    if (fn & 1 || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (!(fn & 1)) {
        while (!(fn & 1) && fn !== 0) {
          fn >>>= 1;
          sn >>>= 1;
        }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>>= 1;
    sn >>>= 1;
  }
  return sn === 0 && eq(fr, firstRoot) && eq(sr, secondRoot);
}

export async function verifyAudit(a: { size: number; checkpoint: string | null; verifierKey: string }): Promise<{ ok: boolean; detail: string }> {
  if (!a.checkpoint) return { ok: false, detail: t('no checkpoint has been signed yet') };
  const [name, , key64] = a.verifierKey.split('+', 3).length === 3 ? [a.verifierKey.split('+')[0], a.verifierKey.split('+')[1], a.verifierKey.split('+').slice(2).join('+')] : ['', '', ''];
  const raw = b64(key64);
  if (raw[0] !== 1 || raw.length !== 33) return { ok: false, detail: t('the verifier key is not an Ed25519 key') };
  const pinned = localStorage.getItem(PIN);
  if (pinned && pinned !== a.verifierKey) return { ok: false, detail: t('the verifier key changed since this browser pinned it') };
  const [text, sigs] = a.checkpoint.split('\n\n');
  const body = new TextEncoder().encode(`${text}\n`);
  const line = sigs.split('\n').find((l) => l.startsWith(`\u2014 ${name} `));
  if (!line) return { ok: false, detail: t('no signature by {name}', { name }) };
  const blob = b64(line.slice(`\u2014 ${name} `.length));
  const pub = await crypto.subtle.importKey('raw', raw.slice(1), { name: 'Ed25519' }, false, ['verify']);
  const good = await crypto.subtle.verify({ name: 'Ed25519' }, pub, blob.slice(4), body);
  if (!good) return { ok: false, detail: t('the checkpoint signature does not verify') };
  const [, sizeLine, rootLine] = text.split('\n');
  const size = Number(sizeLine);
  const root = b64(rootLine);
  const seen = JSON.parse(localStorage.getItem(SEEN) ?? 'null') as { size: number; root: string } | null;
  let consistent = t('first checkpoint seen by this browser');
  if (seen) {
    if (seen.size > size) return { ok: false, detail: t('the log is shorter than when this browser last verified it ({a} < {b})', { a: size, b: seen.size }) };
    if (seen.size < size) {
      const p = await get(`/platform/v1/audit/proofs/consistency?from=${seen.size}&to=${size}`);
      const proof = (p.proof as string[]).map(b64);
      if (!(await verifyConsistency(seen.size, size, b64(seen.root), root, proof)))
        return { ok: false, detail: t('the log is not an extension of the one verified before') };
      consistent = t('extends the {n} entries verified before', { n: seen.size });
    } else if (!eq(b64(seen.root), root)) {
      return { ok: false, detail: t('same size, different root: the log was rewritten') };
    } else consistent = t('unchanged since last verified');
  }
  localStorage.setItem(PIN, a.verifierKey);
  localStorage.setItem(SEEN, JSON.stringify({ size, root: rootLine }));
  return { ok: true, detail: t('signed checkpoint of {n} entries (root {root}…), {c}', { n: size, root: hex(root).slice(0, 12), c: consistent }) };
}
