#!/usr/bin/env bash
# Sets up what is missing, idempotently: .venv/ in the repo root with livecut installed.
# Re-installs only when pyproject.toml (or the requested extras) changed.
# Usage: deploy/bootstrap.sh [EXTRAS]     e.g. deploy/bootstrap.sh test
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-}"

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "livecut needs Python >= 3.11 with venv (e.g. apt-get install python3 python3-venv)" >&2
    exit 1
}

if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "$(find_python)" -m venv "$ROOT/.venv"
fi
stamp="$ROOT/.venv/.livecut-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) [$EXTRAS]"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing livecut into $ROOT/.venv ..." >&2
    "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
    "$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}"
    echo "$want" >"$stamp"
fi
