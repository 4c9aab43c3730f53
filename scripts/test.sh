#!/usr/bin/env bash
# The project's test command (README quick start). Runs every crate's unit tests,
# the in-process API tests and the black-box tests of the real binary (including the
# kill -9 durability test), then the web console's smoke test in Debian's Chromium.
# Uses cargo-nextest when present, cargo test otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
# Real MQTT peers for the MQTT tests (idempotent; without them those tests skip).
scripts/install-deps.sh || echo "test.sh: could not install mosquitto; MQTT tests will skip" >&2
# Eclipse SUMO for the digital twin's tests (idempotent; without it those tests skip).
scripts/install-sumo.sh || echo "test.sh: could not install SUMO; twin tests will skip" >&2
# Chromium, fonts and the console's npm packages (idempotent; without them the
# console's browser test skips, unless REQUIRE_BROWSER=1).
browser=1
scripts/install-browser.sh || { browser=0; echo "test.sh: could not install Chromium/Node.js; the console's browser test will skip" >&2; }
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked "$@"
else
  cargo test --workspace --locked "$@"
fi
# The console in a real browser, against the binary the tests just built (the heavy
# suite is scripts/test-console.sh --all).
if [ "$browser" = 1 ]; then
  # The binary of this checkout (cheap: the black-box tests built it, unless the
  # arguments filtered them out).
  cargo build -p citybrain --locked --quiet
  CONSOLE_TEST_BIN=${CONSOLE_TEST_BIN:-${CARGO_TARGET_DIR:-target}/debug/citybrain} scripts/test-console.sh
elif [ "${REQUIRE_BROWSER:-0}" = 1 ]; then
  echo "test.sh: REQUIRE_BROWSER=1 but Chromium/Node.js could not be installed" >&2
  exit 1
fi
