#!/usr/bin/env bash
# The console's tests in Debian's Chromium (console/tests/, Node's test runner with
# playwright-core and axe-core). Screenshots go to console/test-results/.
#
#   scripts/test-console.sh          # translations and the smoke test (default CI run)
#   scripts/test-console.sh --all    # also the duty-officer scenario, accessibility
#                                    # on every view, and 10,000 entities (heavy suite)
#
# Uses target/release/citybrain when it is there, else target/debug/citybrain
# (CITYBRAIN_BIN to choose); run `cargo build` first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-browser.sh >/dev/null
tests=(tests/i18n.test.mjs tests/smoke.test.mjs)
if [ "${1:-}" = "--all" ]; then
  tests+=(tests/e2e.test.mjs tests/scale.test.mjs)
fi
cd console
node --test --test-concurrency=1 --test-reporter=spec "${tests[@]}"
