#!/usr/bin/env bash
# Installs what the console's browser tests need, idempotently: Debian's Chromium (the
# tests drive /usr/bin/chromium with playwright-core; no browser is downloaded),
# Noto CJK fonts (the console's Chinese), Node.js and npm where missing, and the
# console's npm packages from its lockfile (console/package-lock.json).
#
#   scripts/install-browser.sh
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
# (grep reads all of fc-list's output: no SIGPIPE under pipefail.)
fc-list : family 2>/dev/null | grep -i "Noto Sans CJK" >/dev/null || need+=(fonts-noto-cjk)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "install-browser: installing ${need[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
fi
# The browser tests need Node.js 18 or later (Node's test runner, fetch); building
# the console needs 20.19 (scripts/build-console.sh says so itself).
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
  echo "install-browser: Node.js $(node --version) is too old for the console's tests (18 or later)" >&2
  exit 1
fi
# npm packages: again only when the lockfile changed since the last install.
stamp=console/node_modules/.citybrain-lock
want=$(sha256sum console/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  (cd console && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null | head -1); node $(node --version)"
