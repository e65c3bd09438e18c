#!/usr/bin/env bash
# README command 1: set up what is missing, then run livecut with the demo channel.
# Extra arguments go to `livecut up` (e.g. --port 8080 --data-dir /srv/livecut).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/deploy/bootstrap.sh"
exec "$ROOT/.venv/bin/livecut" up --demo "$@"
