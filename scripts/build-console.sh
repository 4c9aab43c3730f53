#!/usr/bin/env bash
# Builds the web console (console/, Vite) into crates/console/assets/, which the server
# embeds. The built files are committed, so `cargo build` never needs Node.js; run this
# after changing console/ and commit the result (docs/console.md).
#
#   scripts/build-console.sh           # rebuild crates/console/assets/
#   scripts/build-console.sh --check   # fail if the committed build is not what the
#                                      # sources build to (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-browser.sh >/dev/null
# Vite 8 runs on Node.js 20.19 or later.
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  echo "build-console: Vite needs Node.js >= 20.19 (have $(node --version)); skipped" >&2
  [ "${1:-}" = "--check" ] && exit 0 || exit 1
fi
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  (cd console && CONSOLE_OUT="$out" npm run --silent build >/dev/null)
  if ! diff -r "$out" crates/console/assets >/dev/null; then
    diff -r "$out" crates/console/assets | head -20 >&2
    echo "build-console: crates/console/assets/ is not what console/ builds to; run scripts/build-console.sh and commit" >&2
    exit 1
  fi
  echo "build-console: the committed console build matches its sources"
else
  (cd console && npm run --silent build)
fi
