#!/usr/bin/env bash
# The soak test (issue #18, point 6): a mixed load against a real server for N minutes
# with a kill -9 and restart half way (citybrain-bench's `soak` scenario starts and
# restarts the server itself). Prints progress on stderr and the JSON figures last.
#
#   scripts/soak.sh [--minutes 60] [--rate 5]
#
# --rate scales the load: 1 is 200 PATCH/s, 1,000 sensor upserts/s in batches, 50
# queries/s, 10 temporal reads/s and 50 MQTT messages/s; 5 is what docs/benchmarks.md
# reports. It fails when an acknowledged write was lost.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=60; rate=5
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    *) echo "usage: scripts/soak.sh [--minutes N] [--rate R]" >&2; exit 2 ;;
  esac
done
cargo build --release --locked -p citybrain -p citybrain-bench
sync
bin=${CARGO_TARGET_DIR:-target}/release
out=$("$bin/citybrain-bench" --scenarios soak --soak-seconds $((minutes * 60)) \
  --soak-rate "$rate" --citybrain "$bin/citybrain" --mappings examples/mappings | tail -1)
echo "$out"
python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])["soak"]
lost = r["lost_acknowledged_writes"]
print(f"soak: lost acknowledged writes {lost}, RSS growth over the second half {r['rss_growth_second_half_pct']}%", file=sys.stderr)
sys.exit(1 if lost else 0)
PY
