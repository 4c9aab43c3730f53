// Gzips every built asset beside itself (`x.js` → `x.js.gz`): the server sends the
// compressed copy to clients that accept gzip, without compressing at run time.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync, constants } from 'node:zlib';

const root = process.env.CONSOLE_OUT ?? new URL('../../crates/console/assets/', import.meta.url).pathname;
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (/\.(js|mjs|css|html|svg|json)$/.test(name)) {
      const gz = gzipSync(readFileSync(p), { level: constants.Z_BEST_COMPRESSION });
      writeFileSync(p + '.gz', gz);
    }
  }
}
walk(root);
