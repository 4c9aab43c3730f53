#!/usr/bin/env bash
# Runs the benchmark scenarios against a fresh release build on this machine and prints
# citybrain-bench's JSON (last line). Load generator and server share the machine.
#
#   scripts/bench.sh [--quick] [extra citybrain-bench flags...]
#
# --quick: short runs (CI smoke; the figures are not the published ones).
# The memory scenario (1M entities) runs only with --memory.
# The history scenario runs in process (no server) and compares with SQLite; so do the
# ingestion scenarios (file import, MQTT QoS 0/1, edge reduction) and the coordination
# hub's (10,000 rules alone; end to end at 100,000 observations/s for 30 s).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0; memory=0; extra=()
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --memory) memory=1 ;;
    *) extra+=("$a") ;;
  esac
done
cargo build --release --locked -p citybrain -p citybrain-bench --features citybrain-bench/sqlite
# The build leaves hundreds of MB of dirty pages: written back before the scenarios
# start, not during their log fsyncs.
sync
DATA=$(mktemp -d)
PORT=${BENCH_PORT:-1029}
RUST_LOG=warn CITYBRAIN_MQTT__ENABLED=false target/release/citybrain serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" >"$DATA/server.out" 2>"$DATA/server.err" &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
if [ "$quick" = 1 ]; then
  target/release/citybrain-bench --url "http://127.0.0.1:$PORT" --duration 2 --entities 2000 --batch-size 200 "${extra[@]}"
  target/release/citybrain-bench --scenarios history --duration 2 --quick
  target/release/citybrain-bench --scenarios import,mqtt,edge --quick
  target/release/citybrain-bench --scenarios rules,hub --quick
else
  target/release/citybrain-bench --url "http://127.0.0.1:$PORT" "${extra[@]}"
  target/release/citybrain-bench --scenarios history
  target/release/citybrain-bench --scenarios import,mqtt,edge
  target/release/citybrain-bench --scenarios rules,hub --duration 30
fi
if [ "$memory" = 1 ]; then
  target/release/citybrain-bench --url "http://127.0.0.1:$PORT" --scenarios memory --server-pid "$PID" --tenant mem
fi
