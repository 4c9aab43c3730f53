#!/usr/bin/env bash
# The cost of governance, measured in one run with and without (issue #14, point 11):
# GET-by-id and query throughput on an open server (AllowAll) against the same on a
# server with authentication on, read by
#   - an administrator (policy decisions, every attribute as stored), and
#   - an analyst for whom one attribute of each entity is pseudonymised (HMAC) and the
#     filtered attribute is shown as stored (masking on every answer);
# and PATCH throughput open and as the administrator. The three are interleaved,
# ROUNDS times, so that machine noise falls on all of them; prints each round and the
# range of the ratios.
#
#   scripts/bench-governance.sh [ROUNDS] [DURATION_S]
#   AUDIT=false scripts/bench-governance.sh ...   # policies and masking alone
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; DUR=${2:-5}
cargo build --release --locked -p citybrain -p citybrain-bench
sync
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"' EXIT
B=target/release/citybrain
ADMIN=$($B bootstrap --data-dir "$W/gov" 2>/dev/null)
ANALYST=$($B keys create --data-dir "$W/gov" --user ann --role analyst --scope read --quiet)
RUST_LOG=warn CITYBRAIN_MQTT__ENABLED=false $B serve --listen 127.0.0.1:1031 --data-dir "$W/open" >"$W/open.log" 2>&1 &
RUST_LOG=warn CITYBRAIN_MQTT__ENABLED=false CITYBRAIN_AUDIT__ENABLED=${AUDIT:-true} $B serve --listen 127.0.0.1:1032 --data-dir "$W/gov" >"$W/gov.log" 2>&1 &
for p in 1031 1032; do for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/health" >/dev/null && break; sleep 0.1; done; done
curl -sf -X PUT -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"attributes": {"TrafficFlowObserved.averageVehicleSpeed": {"level": "important"}}}' \
  http://127.0.0.1:1032/platform/v1/classification >/dev/null
# Seed both (10,000 entities each) once.
target/release/citybrain-bench --url http://127.0.0.1:1031 --scenarios get --duration 1 >/dev/null 2>&1
target/release/citybrain-bench --url http://127.0.0.1:1032 --key "$ADMIN" --scenarios get --duration 1 >/dev/null 2>&1
run() { target/release/citybrain-bench --seeded --duration "$DUR" "$@" 2>/dev/null | tail -1; }
out="$W/rounds.jsonl"
for r in $(seq "$ROUNDS"); do
  o=$(run --url http://127.0.0.1:1031 --scenarios patch,get,query)
  a=$(run --url http://127.0.0.1:1032 --key "$ADMIN" --scenarios patch,get,query)
  n=$(run --url http://127.0.0.1:1032 --key "$ANALYST" --scenarios get,query)
  echo "{\"round\": $r, \"open\": $o, \"admin\": $a, \"analyst\": $n}" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def rate(row, who, s):
    return row[who][s]["ops_per_sec"]
print("ratio ranges over rounds (governed / open; 1.00 = no cost):")
for who, scen in (("admin", ("patch", "get", "query")), ("analyst", ("get", "query"))):
    for s in scen:
        r = [rate(x, who, s) / rate(x, "open", s) for x in rows]
        print(f"  {who:8} {s:6} {min(r):.2f}-{max(r):.2f}   open {min(rate(x,'open',s) for x in rows):.0f}-{max(rate(x,'open',s) for x in rows):.0f}/s, governed {min(rate(x,who,s) for x in rows):.0f}-{max(rate(x,who,s) for x in rows):.0f}/s")
PY
