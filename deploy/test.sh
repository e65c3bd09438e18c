#!/usr/bin/env bash
# README command 2: the whole test suite. Installs the Debian test peers when missing;
# if one cannot be had, it fails loudly (nothing is skipped).
# Extra arguments go to pytest (e.g. -k ring_buffer).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/deploy/bootstrap.sh" test

declare -A PEERS=([ffmpeg]=ffmpeg [espeak-ng]=espeak-ng)
missing=()
for tool in "${!PEERS[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${PEERS[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing test peers: ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"; } >&2; then
        echo "FAILED: could not install test peers (${missing[*]}); install them and re-run" >&2
        exit 1
    fi
fi

cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
