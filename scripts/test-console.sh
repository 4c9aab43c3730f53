#!/usr/bin/env bash
# The console's tests in Debian's Chromium (console/tests/, Node's test runner with
# playwright-core and axe-core). Screenshots go to console/test-results/.
#
#   scripts/test-console.sh          # translations and the smoke test (default CI run)
#   scripts/test-console.sh --all    # also the duty-officer scenario, accessibility
#                                    # on every view, and 10,000 entities (heavy suite)
#
# Tests target/release/citybrain when it is there, else target/debug/citybrain
# (CONSOLE_TEST_BIN=path to choose); run `cargo build` first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-browser.sh >/dev/null
tests=(tests/i18n.test.mjs tests/smoke.test.mjs)
if [ "${1:-}" = "--all" ]; then
  tests+=(tests/e2e.test.mjs tests/governance.test.mjs tests/replay.test.mjs tests/scale.test.mjs)
fi
cd console
# One file at a time where Node.js can say so (20.10+): each starts a server and a browser.
flags=(--test --test-reporter=spec)
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=10)?0:1)' && flags+=(--test-concurrency=1)
node "${flags[@]}" "${tests[@]}"
