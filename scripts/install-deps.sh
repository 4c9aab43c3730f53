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
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo -n"; fi  # never prompt: fail fast instead
marker="citybrain install-deps: no service starts during this install"
policy=/usr/sbin/policy-rc.d
# A policy left behind by an interrupted run of this script goes first.
if [ -e "$policy" ] && grep -q "$marker" "$policy" 2>/dev/null; then
  $SUDO rm -f "$policy"
fi
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
if [ ${#need[@]} -eq 0 ]; then
  echo "install-deps: nothing to install"
  exit 0
fi
# The tests need the mosquitto program, not a system broker: they start their own on
# free ports. A mosquitto service or process the machine already has is left alone.
# The package this script installs would start a broker on port 1883 (where
# citybrain's embedded MQTT server listens by default), so its start is refused for
# this install only (policy-rc.d, honoured by Debian's maintainer scripts with or
# without systemd), and the service it installed is stopped (if something let it
# start anyway) and disabled.
had_service=no
if [ -e /lib/systemd/system/mosquitto.service ] || [ -e /etc/init.d/mosquitto ]; then
  had_service=yes
fi
ours=""
if [ ! -e "$policy" ]; then
  ours="$policy"
  trap '$SUDO rm -f "$ours"' EXIT
  printf '#!/bin/sh\n# %s\nexit 101\n' "$marker" | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
if [ "$had_service" = no ]; then
  if command -v systemctl >/dev/null 2>&1 && [ -e /lib/systemd/system/mosquitto.service ]; then
    $SUDO systemctl stop mosquitto 2>/dev/null || echo "install-deps: could not stop the mosquitto service" >&2
    $SUDO systemctl disable --quiet mosquitto 2>/dev/null || echo "install-deps: could not disable the mosquitto service" >&2
  elif [ -e /etc/init.d/mosquitto ]; then
    $SUDO /etc/init.d/mosquitto stop >/dev/null 2>&1 || true
    if command -v update-rc.d >/dev/null 2>&1; then
      $SUDO update-rc.d mosquitto disable >/dev/null 2>&1 || echo "install-deps: could not disable the mosquitto service" >&2
    fi
  fi
fi
echo "install-deps: installed ${need[*]}"
