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
fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || need+=(fonts-noto-cjk)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "install-browser: installing ${need[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
fi
# npm packages: again only when the lockfile changed since the last install.
stamp=console/node_modules/.citybrain-lock
want=$(sha256sum console/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  (cd console && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null | head -1); node $(node --version)"
