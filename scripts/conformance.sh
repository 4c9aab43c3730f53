#!/usr/bin/env bash
# Runs the ETSI NGSI-LD conformance suite (Robot Framework) against a fresh citybrain,
# offline, and prints pass counts per area.
#
#   scripts/conformance.sh SUITE_DIR [AREA...]
#
# SUITE_DIR is a checkout of the official suite (ETSI forge `cim/ngsi-ld-test-suite`;
# the project used the import commit 1d442dc of the GitHub fork
# marek-mraz/ngsi-ld-test-suite). It is not vendored: it is not ours to commit.
# AREA defaults to the areas recorded in docs/conformance.md. Results (Robot's
# output.xml/log.html per area and summary.tsv) go to target/conformance/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SUITE_SRC=${1:?usage: scripts/conformance.sh SUITE_DIR [AREA...]}
shift
AREAS=("$@")
if [ ${#AREAS[@]} -eq 0 ]; then
  AREAS=(
    ContextInformation/Provision/Entities
    ContextInformation/Provision/EntityAttributes
    ContextInformation/Provision/BatchEntities
    ContextInformation/Consumption/Entity
    ContextInformation/Consumption/Discovery
    ContextInformation/Provision/TemporalEntity
    ContextInformation/Provision/TemporalEntityAttributes
    ContextInformation/Consumption/TemporalEntity
    ContextInformation/Subscription
    jsonldContext
    CommonBehaviours
  )
fi
OUT=$ROOT/target/conformance
WORK=$OUT/suite
CTX_PORT=${CTX_PORT:-8099}
BROKER_PORT=${BROKER_PORT:-1026}
PER_AREA_TIMEOUT=${PER_AREA_TIMEOUT:-1800}

# Python packages (idempotent).
# (From the suite's directory: later commits list a local library by relative path.)
(cd "$SUITE_SRC" && python3 -m pip install -q -r requirements.txt)

# A working copy whose context URLs point at a local server.
rm -rf "$WORK" && mkdir -p "$WORK"
cp -r "$SUITE_SRC/TP" "$SUITE_SRC/resources" "$SUITE_SRC/data" "$SUITE_SRC/libraries" "$WORK/"
{ grep -rl 'https://forge.etsi.org/rep/cim/ngsi-ld-test-suite/-/raw/develop/resources/jsonld-contexts/' "$WORK" || true; } \
  | xargs -r sed -i "s#https://forge.etsi.org/rep/cim/ngsi-ld-test-suite/-/raw/develop/resources/jsonld-contexts/#http://127.0.0.1:$CTX_PORT/#g"
# The GitHub fork's later commits name its own raw URLs instead.
{ grep -rl 'https://raw.githubusercontent.com/marek-mraz/ngsi-ld-test-suite/main/resources/jsonld-contexts/' "$WORK" || true; } \
  | xargs -r sed -i "s#https://raw.githubusercontent.com/marek-mraz/ngsi-ld-test-suite/main/resources/jsonld-contexts/#http://127.0.0.1:$CTX_PORT/#g"
# OFFLINE_V18_CONTEXT=1: tests whose data names the suite's v1.8 context on
# easy-global-market.github.io (not in the suite, unreachable offline) get the suite's
# own compound context instead. Results obtained this way are reported separately.
if [ "${OFFLINE_V18_CONTEXT:-0}" = "1" ]; then
  { grep -rl 'https://easy-global-market.github.io/ngsild-api-data-models/ngsildTestSuite/ngsildTestSuiteV1.8-compound.jsonld' "$WORK" || true; } \
    | xargs -r sed -i "s#https://easy-global-market.github.io/ngsild-api-data-models/ngsildTestSuite/ngsildTestSuiteV1.8-compound.jsonld#http://127.0.0.1:$CTX_PORT/ngsi-ld-test-suite-compound.jsonld#g"
fi

cargo build --release -p citybrain --locked
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
(cd "$WORK/resources/jsonld-contexts" && exec python3 -m http.server "$CTX_PORT" --bind 127.0.0.1 >/dev/null 2>&1) &
pids+=($!)
DATA=$(mktemp -d)
# The suite expects paging (206) at 20 instances per attribute (020_13, 020_14).
CITYBRAIN_MQTT__ENABLED=false CITYBRAIN_HISTORY__MAX_INSTANCES=${MAX_INSTANCES:-10} RUST_LOG=${RUST_LOG:-warn} "$ROOT/target/release/citybrain" serve --listen "127.0.0.1:$BROKER_PORT" --data-dir "$DATA" >"$OUT/citybrain.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$BROKER_PORT/health" >/dev/null && break; sleep 0.2; done

# The MQTT notification tests (058_*) start "a mosquitto container" with one of the
# suite's configurations (anonymous, or with a password file) through `docker`. No
# Docker engine runs here: a `docker` stand-in on PATH starts Debian's mosquitto with
# the same configuration instead, listening on 1883 and 8085 (the suite's non-default
# port), and stops it on `docker rm`. scripts/install-deps.sh installs mosquitto.
SHIM="$OUT/shim"
mkdir -p "$SHIM"
cat >"$SHIM/docker" <<SH
#!/usr/bin/env bash
# docker stand-in for the conformance suite's MQTT tests.
conf_dir="$WORK/resources/mqttUtils/mosquitto"
pidfile="$OUT/mosquitto.pid"
stop() { [ -f "\$pidfile" ] && kill "\$(cat "\$pidfile")" 2>/dev/null; rm -f "\$pidfile"; sleep 0.2; }
case "\$1" in
  run)
    conf=mosquitto.conf
    for a in "\$@"; do case "\$a" in CONF=*) conf="\${a#CONF=}";; esac; done
    stop
    sed -e "s#/mosquitto/config/#\$conf_dir/#" -e '/^listener/d' "\$conf_dir/\$conf" >"$OUT/mosquitto-run.conf"
    printf '\\nlistener 1883 127.0.0.1\nlistener 8085 127.0.0.1\n' >>"$OUT/mosquitto-run.conf"
    /usr/sbin/mosquitto -c "$OUT/mosquitto-run.conf" >"$OUT/mosquitto.log" 2>&1 &
    echo \$! >"\$pidfile"
    for _ in \$(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 0.1; done
    ;;
  rm|container) stop ;;
esac
exit 0
SH
chmod +x "$SHIM/docker"

printf 'area\tpassed\tfailed\ttotal\n' >"$OUT/summary.tsv"
for area in "${AREAS[@]}"; do
  name=${area//\//-}
  mkdir -p "$OUT/$name"
  (cd "$WORK" && PATH="$SHIM:$PATH" timeout "$PER_AREA_TIMEOUT" robot --console dotted \
    --variable "mqtt_broker_host:127.0.0.1" \
    --variable "url:http://127.0.0.1:$BROKER_PORT/ngsi-ld/v1" \
    --variable "temporal_api_url:http://127.0.0.1:$BROKER_PORT/ngsi-ld/v1" \
    --variable "notification_server_host:127.0.0.1" \
    --variable "context_source_host:127.0.0.1" \
    --variable "context_server_host:127.0.0.1" \
    --variable "ngsild_test_suite_context:http://127.0.0.1:$CTX_PORT/ngsi-ld-test-suite-compound.jsonld" \
    --outputdir "$OUT/$name" "TP/NGSI-LD/$area" >"$OUT/$name/console.txt" 2>&1) || true
  python3 - "$OUT/$name/output.xml" "$area" >>"$OUT/summary.tsv" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
    total = root.find("./statistics/total/stat")
    p, f = int(total.get("pass")), int(total.get("fail"))
except Exception:
    p, f = 0, 0
print(f"{sys.argv[2]}\t{p}\t{f}\t{p+f}")
PY
  tail -1 "$OUT/summary.tsv"
done
column -t "$OUT/summary.tsv"
