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
  echo "build-console: Vite needs Node.js >= 20.19 (have $(node --version))" >&2
  # Without it the check cannot run: a failure where the browser is required (CI).
  [ "${1:-}" = "--check" ] && [ "${REQUIRE_BROWSER:-0}" != 1 ] && exit 0 || exit 1
fi
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  (cd console && CONSOLE_OUT="$out" npm run --silent build >/dev/null)
  # The plain files byte for byte; the gzip copies by what they inflate to (gzip's
  # bytes may differ between zlib builds).
  stale=0
  diff -r -x '*.gz' "$out" crates/console/assets >&2 || stale=1
  for f in $(cd "$out" && find . -name '*.gz' | sort); do
    committed="crates/console/assets/$f"
    if [ ! -f "$committed" ] || ! gzip -dc "$committed" | cmp -s - "crates/console/assets/${f%.gz}"; then
      echo "build-console: $f is missing or does not inflate to its file" >&2
      stale=1
    fi
  done
  if [ "$(cd crates/console/assets && find . -name '*.gz' | sort)" != "$(cd "$out" && find . -name '*.gz' | sort)" ]; then
    echo "build-console: the gzip copies are not the ones the build makes" >&2
    stale=1
  fi
  if [ "$stale" = 1 ]; then
    echo "build-console: crates/console/assets/ is not what console/ builds to; run scripts/build-console.sh and commit" >&2
    exit 1
  fi
  echo "build-console: the committed console build matches its sources"
else
  (cd console && npm run --silent build)
fi
