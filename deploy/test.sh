#!/usr/bin/env bash
# README command 2: the whole test suite. Installs the Debian test peers when missing;
# if one cannot be had, it fails loudly (nothing is skipped).
# Extra arguments go to pytest (e.g. -k ring_buffer).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/deploy/bootstrap.sh" test

# Real peers the tests talk to, from Debian: the ffmpeg CLI (our stand-in for OBS), espeak-ng
# (speech fixtures), GStreamer's RTSP server (a real camera-side server, run by Debian's python3)
# and ngircd (a real IRC server standing in for Twitch chat); Chromium for the web console and
# OBS Studio (headless under Xvfb, software OpenGL) publishing into it as users' OBS does.
PEER_PACKAGES=(ffmpeg espeak-ng ngircd python3-gi gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad chromium
    obs-studio xvfb xauth libgl1-mesa-dri)
have_peers() {
    command -v ffmpeg >/dev/null 2>&1 && command -v espeak-ng >/dev/null 2>&1 &&
        [ -x /usr/sbin/ngircd ] && [ -x /usr/bin/chromium ] &&
        command -v obs >/dev/null 2>&1 && command -v xvfb-run >/dev/null 2>&1 &&
        /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" >/dev/null 2>&1 &&
        for p in "${PEER_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || return 1; done
}
if ! have_peers; then
    echo "installing test peers: ${PEER_PACKAGES[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    if ! { $SUDO apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${PEER_PACKAGES[@]}"; } >&2 ||
        ! have_peers; then
        echo "FAILED: could not install the test peers (${PEER_PACKAGES[*]}); install them and re-run" >&2
        exit 1
    fi
fi

cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
