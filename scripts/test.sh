#!/usr/bin/env bash
# The project's test command (README quick start). Runs every crate's unit tests,
# the in-process API tests and the black-box tests of the real binary (including the
# kill -9 durability test). Uses cargo-nextest when present, cargo test otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
# Real MQTT peers for the MQTT tests (idempotent; without them those tests skip).
scripts/install-deps.sh || echo "test.sh: could not install mosquitto; MQTT tests will skip" >&2
# Eclipse SUMO for the digital twin's tests (idempotent; without it those tests skip).
scripts/install-sumo.sh || echo "test.sh: could not install SUMO; twin tests will skip" >&2
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked "$@"
else
  cargo test --workspace --locked "$@"
fi
