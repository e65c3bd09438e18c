#!/usr/bin/env bash
# Start (or stop) one Ray node of a livecut cluster. See deploy/cluster.md.
#
#   deploy/ray-node.sh head   [--slots N] [options] [-- extra `ray start` args]
#   deploy/ray-node.sh worker --address HEAD:PORT [--slots N] [options] [-- extra args]
#   deploy/ray-node.sh stop   [--temp-dir DIR]
#   deploy/ray-node.sh token                      # print the cluster token (generates one if none)
#
# Options:
#   --slots N        stream actors this node takes: its livecut_stream_slot resource (default 6)
#   --cpus N         CPUs Ray may schedule here (default: detected). A live stream actor asks
#                    0.25 CPU; with the node's ASR server a stream uses about 0.25 in all:
#                    give a node about 3 slots per core.
#   --gpus N         GPUs Ray may schedule here (with `livecut up --asr-gpus F` / `--actor-gpus F`)
#   --ip ADDR        this node's address as the other nodes reach it (default: detected)
#   --address H:P    (worker) the head's GCS address
#   --port P         (head) GCS port (default 6379)
#   --port-base B    pin this node's other ports to B..B+7 (head: dashboard B+6, client B+7)
#                    and worker ports to B+100..B+299, for firewalls or two nodes on one
#                    machine; default: Ray's choice
#   --temp-dir DIR   this node's Ray temp/log dir (default /tmp/ray); one per node on a machine
#
# Token authentication is on: RAY_AUTH_MODE=token unless you export RAY_AUTH_MODE=disabled.
# The token comes from RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token.
# Every node, `livecut up` and any `ray` CLI call need the same token and RAY_AUTH_MODE=token.
#
# `stop` with --temp-dir stops only that node's processes (found by its temp dir, and their
# children: workers, stream actors, ffmpeg). Without it, it runs `ray stop`: EVERY Ray on this machine.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
if [[ -z "${RAY:-}" ]]; then
  if [[ -x "$repo/.venv/bin/ray" ]]; then RAY="$repo/.venv/bin/ray"; else RAY="$(command -v ray || true)"; fi
fi
[[ -n "$RAY" && -x "$RAY" ]] || { echo "ray-node.sh: no ray CLI (set RAY=/path/to/venv/bin/ray)" >&2; exit 2; }
PY="$(dirname "$RAY")/python"

die() { echo "ray-node.sh: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

cmd="${1:-}"; [[ -n "$cmd" ]] || usage 2; shift
[[ "$cmd" == -h || "$cmd" == --help || "$cmd" == help ]] && usage 0
slots=6 cpus="" gpus="" ip="" address="" port=6379 port_base="" temp_dir="" extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --slots) slots="$2"; shift 2 ;;
    --cpus) cpus="$2"; shift 2 ;;
    --gpus) gpus="$2"; shift 2 ;;
    --ip) ip="$2"; shift 2 ;;
    --address) address="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --port-base) port_base="$2"; shift 2 ;;
    --temp-dir) temp_dir="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ "$slots" =~ ^[0-9]+$ ]] || die "--slots must be a whole number, got '$slots'"

export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
have_token() {
  [[ -n "${RAY_AUTH_TOKEN:-}" ]] || [[ -n "${RAY_AUTH_TOKEN_PATH:-}" && -s "${RAY_AUTH_TOKEN_PATH}" ]] || [[ -s "$HOME/.ray/auth_token" ]]
}

stop_node() {  # by pid: the node's processes (their command lines name its temp dir) and their children
  "$PY" - "$1" <<'EOF'
import os, sys, psutil
temp = os.path.realpath(sys.argv[1]).rstrip("/")
mine = {os.getpid(), *(a.pid for a in psutil.Process().parents())}  # never this script or its callers
roots = []
for p in psutil.process_iter(["pid", "cmdline"]):
    try:
        cmd = " " + " ".join(p.info["cmdline"] or []) + " "
    except psutil.Error:
        continue
    if p.pid not in mine and (temp + "/" in cmd or "=" + temp + " " in cmd):
        roots.append(p)
procs = {p.pid: p for p in roots}
for p in roots:
    try:
        procs.update({c.pid: c for c in p.children(recursive=True)})
    except psutil.Error:
        pass
for p in procs.values():
    try:
        p.terminate()
    except psutil.Error:
        pass
_, alive = psutil.wait_procs(list(procs.values()), timeout=10)
for p in alive:
    try:
        p.kill()
    except psutil.Error:
        pass
psutil.wait_procs(alive, timeout=5)
print(f"stopped {len(procs)} processes of the Ray node in {temp}")
EOF
}

ports=()
if [[ -n "$port_base" ]]; then
  b="$port_base"
  ports=(--node-manager-port $((b)) --object-manager-port $((b+1)) --metrics-export-port $((b+2))
         --dashboard-agent-grpc-port $((b+3)) --dashboard-agent-listen-port $((b+4))
         --runtime-env-agent-port $((b+5)) --min-worker-port $((b+100)) --max-worker-port $((b+299)))
fi
common=(--resources "{\"livecut_stream_slot\": $slots}" --disable-usage-stats "${ports[@]}")
[[ -n "$cpus" ]] && common+=(--num-cpus "$cpus")
[[ -n "$gpus" ]] && common+=(--num-gpus "$gpus")
[[ -n "$ip" ]] && common+=(--node-ip-address "$ip")
[[ -n "$temp_dir" ]] && { mkdir -p "$temp_dir"; common+=(--temp-dir "$(cd "$temp_dir" && pwd -P)"); }

case "$cmd" in
  head)
    if [[ "$RAY_AUTH_MODE" == token ]] && ! have_token; then
      echo "ray-node.sh: no token found; generating ~/.ray/auth_token (copy it to every node)" >&2
      "$RAY" get-auth-token --generate >/dev/null
    fi
    head_ports=()
    [[ -n "$port_base" ]] && head_ports=(--dashboard-port $((port_base+6)) --ray-client-server-port $((port_base+7)))
    "$RAY" start --head --port "$port" "${head_ports[@]}" "${common[@]}" "${extra[@]}"
    echo "livecut: run \`RAY_AUTH_MODE=token livecut up --ray-address ${ip:-<this host>}:$port\` with DATABASE_URL and REDIS_URL set"
    ;;
  worker)
    [[ -n "$address" ]] || die "worker needs --address HEAD_HOST:PORT"
    if [[ "$RAY_AUTH_MODE" == token ]] && ! have_token; then
      die "token auth is on but no token here: set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH), or copy the head's ~/.ray/auth_token"
    fi
    "$RAY" start --address "$address" "${common[@]}" "${extra[@]}"
    ;;
  stop)
    if [[ -n "$temp_dir" ]]; then stop_node "$temp_dir"; else "$RAY" stop; fi
    ;;
  token)
    "$RAY" get-auth-token --generate
    ;;
  *) usage 2 ;;
esac
