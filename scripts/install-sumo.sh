#!/usr/bin/env bash
# Installs Eclipse SUMO (the traffic simulator the digital twin drives) from PyPI into
# the project's own virtualenv, idempotently and pinned. Debian's `sumo` package is
# 1.15; the twin is developed and measured against 1.28.0 (docs/twin.md).
#
#   scripts/install-sumo.sh          # → .venv-sumo/bin/sumo, netgenerate, ...
#   SUMO_VENV=/opt/sumo scripts/install-sumo.sh
#
# citybrain finds SUMO through `SUMO_HOME`, then `.venv-sumo` next to the working
# directory, then `sumo` on PATH (crates/twin/src/sumo.rs: `locate`).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.28.0
VENV=${SUMO_VENV:-.venv-sumo}
if [ -x "$VENV/bin/sumo" ] && "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('eclipse-sumo') != '$VERSION')" 2>/dev/null; then
  echo "install-sumo: eclipse-sumo $VERSION present in $VENV"
  exit 0
fi
python3 -m venv "$VENV"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install --quiet "eclipse-sumo==$VERSION"
# Not `sumo --version | head -1`: under pipefail, head closing the pipe kills sumo with
# SIGPIPE, and PyPI's sumo wrapper exits with -13 (243), which failed a CI run.
version=$("$VENV/bin/sumo" --version)
echo "${version%%$'\n'*}"
echo "install-sumo: installed eclipse-sumo $VERSION into $VENV"
