#!/usr/bin/env bash
# Installs what the test suites need beyond the Rust toolchain, idempotently:
# Debian's mosquitto (a real MQTT broker for the client-mode test) and
# mosquitto-clients (mosquitto_pub/mosquitto_sub, real clients for the embedded
# server's tests); the Python Open311 client library `georeport` (a real client of the
# Open311 endpoint). Tests that need them skip with a message when they are absent, so
# the default suite still runs on a machine without them.
set -euo pipefail
# Python packages first (no root needed): pinned, into the user's site.
if command -v python3 >/dev/null 2>&1; then
  if python3 -c "import georeport, requests, xmltodict" 2>/dev/null; then
    echo "install-deps: georeport present"
  else
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --user --quiet --disable-pip-version-check \
      "georeport==0.3.1" "requests>=2.32.4,<3" "xmltodict>=0.14.2,<0.15" \
      && echo "install-deps: installed georeport" \
      || echo "install-deps: could not install georeport (the Open311 client test will skip)" >&2
  fi
fi
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
if [ ${#need[@]} -eq 0 ]; then
  echo "install-deps: nothing to install"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo -n"; fi  # never prompt: fail fast instead
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
# The Debian package starts a system broker on port 1883; the tests start their own
# on free ports, and citybrain's embedded server defaults to 1883, so stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  $SUDO systemctl stop mosquitto || true
  $SUDO systemctl disable mosquitto || true
fi
if pgrep -x mosquitto >/dev/null 2>&1; then
  $SUDO pkill -x mosquitto || true
fi
echo "install-deps: installed ${need[*]}"
