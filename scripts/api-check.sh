#!/usr/bin/env bash
# Checks the running server against its own OpenAPI document (/openapi.json) with
# schemathesis, a property-based API tester: it sends the documented examples, values
# at the edges of every schema and random valid and invalid requests to every
# documented operation, then sequences of calls along the document's links (create a
# rule, then read, replace and delete it; file an incident, then comment and move
# it), and fails on any 5xx, any status the document does not list, any undocumented
# content type and any answer its schema does not admit.
#
#   scripts/api-check.sh                   # the debug binary, 40 examples per operation
#   scripts/api-check.sh --examples 200    # deeper (CI's heavy suite)
#   API_CHECK_BIN=target/release/citybrain scripts/api-check.sh
#
# Installs schemathesis (pinned) into .venv-api, idempotently. Starts its own server on
# a free port with a fresh data directory and the demo city (without the twin), so
# the operations meet real rules, incidents, areas and datasets; stops it at the end.
# Reports (JUnit, and the failures as a pytest file that reproduces them) go to
# target/api-check/. The live feeds (Server-Sent Events that never end) are described
# in the document but not fuzzed.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.32.5
VENV=${API_CHECK_VENV:-.venv-api}
examples=40
seed=${API_CHECK_SEED:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --examples) examples=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    *) echo "api-check: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -x "$VENV/bin/schemathesis" ] && "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$VERSION')" 2>/dev/null; then
  echo "api-check: schemathesis $VERSION present in $VENV"
else
  python3 -m venv "$VENV"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install --quiet "schemathesis==$VERSION"
  echo "api-check: installed schemathesis $VERSION into $VENV"
fi

bin=${API_CHECK_BIN:-${CARGO_TARGET_DIR:-target}/debug/citybrain}
if [ -z "${API_CHECK_BIN:-}" ]; then
  cargo build -p citybrain --locked --quiet
fi
out=${CARGO_TARGET_DIR:-target}/api-check
rm -rf "$out"
mkdir -p "$out"
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The twin stays off (SUMO is not what is checked here); the demo city and its rules
# are in.
CITYBRAIN_TWIN__ENABLED=false CITYBRAIN_STORAGE__BACKUP_DIR="$data/backups" "$bin" serve --demo --listen "127.0.0.1:$port" \
  --mqtt-listen 127.0.0.1:0 --data-dir "$data" >"$out/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "api-check: the server did not start:" >&2
    tail -20 "$out/server.log" >&2
    exit 1
  fi
  sleep 0.2
done

# One worker: with two, hypothesis parses lambdas' source in both threads at once, and
# CPython 3.11's ast module then fails now and then ("AST constructor recursion depth
# mismatch", cpython#106905): an error of the tester, not of the server.
args=(run "http://127.0.0.1:$port/openapi.json"
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
  --phases examples,coverage,fuzzing,stateful
  --max-examples "$examples"
  --exclude-path /platform/v1/live
  --exclude-path /platform/v1/events/stream
  --workers 1
  --request-timeout 30
  --suppress-health-check all
  --generation-database none
  --report junit,pytest
  --report-dir "$out"
  --no-color)
if [ -n "$seed" ]; then args+=(--seed "$seed"); fi
status=0
"$VENV/bin/schemathesis" "${args[@]}" || status=$?
if ! kill -0 "$server" 2>/dev/null; then
  echo "api-check: the server died during the run:" >&2
  tail -40 "$out/server.log" >&2
  exit 1
fi
if [ "$status" != 0 ]; then
  echo "api-check: schemathesis found failures (reports in $out)" >&2
fi
exit "$status"
