#!/usr/bin/env bash
# Local mirrors of what the hosts download, served from this machine (the test controller):
#   git daemon  git://HOST:19418/llama.cpp.git      (.cache/mirror/git)
#   olah        http://HOST:18090  Hugging Face protocol, offline mode   (.cache/mirror/hf)
#   wheelhouse  http://HOST:18091/  pip --find-links  (.cache/wheels)
#   nvidia      http://HOST:18092/compute/cuda/repos/  a stand-in for NVIDIA's CUDA repository server,
#               which cannot be reached here: only the key paths check mode asks for (.cache/mirror/nvidia)
# They listen on all addresses so podman containers reach them at host.containers.internal.
# Pid files and logs: .cache/run/{git,olah,wheels,nvidia}.{pid,log} (nvidia.log: one line per request). `start` is a no-op for what runs already
# and fails (with the log) when a port does not answer.
# Usage: mirrors.sh start|stop|status
# Ports can be moved for a second copy of the tree: EDGE_LLAMA_GIT_PORT, EDGE_LLAMA_HF_PORT,
# EDGE_LLAMA_WHEELS_PORT, EDGE_LLAMA_NVIDIA_PORT (the hosts' configuration assumes the defaults).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${EDGE_LLAMA_CACHE:-$repo/.cache}
run=$cache/run
mkdir -p "$run"
say() { echo "edge-llama mirrors: $*"; }
git_port=${EDGE_LLAMA_GIT_PORT:-19418}
hf_port=${EDGE_LLAMA_HF_PORT:-18090}
wheels_port=${EDGE_LLAMA_WHEELS_PORT:-18091}
nvidia_port=${EDGE_LLAMA_NVIDIA_PORT:-18092}

olah_cli() {
  local cli="$cache/olah-venv/bin/olah-cli"
  if [ ! -x "$cli" ]; then
    say "olah is not installed in .cache/olah-venv: run tests/setup/bootstrap.sh first" >&2
    return 1
  fi
  echo "$cli"
}

running() { [ -f "$run/$1.pid" ] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

launch() {  # name port command...
  local name=$1 port=$2; shift 2
  if running "$name"; then say "$name already running (pid $(cat "$run/$name.pid"))"; return 0; fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    say "port $port is taken by a process this script did not start (see: ss -ltnp 'sport = :$port')" >&2
    return 1
  fi
  (cd "$run" && exec setsid "$@" >"$run/$name.log" 2>&1 < /dev/null) &
  echo $! > "$run/$name.pid"
  for _ in $(seq 1 60); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then say "$name listening on :$port"; return 0; fi
    if ! running "$name"; then break; fi
    sleep 0.5
  done
  say "$name did not answer on :$port; its log:" >&2; tail -n 40 "$run/$name.log" >&2; return 1
}

start() {
  local olah; olah=$(olah_cli)
  cat > "$run/olah.toml" <<TOML
[basic]
host = "0.0.0.0"
port = $hf_port
repos-path = "$run/olah-repos"
mirrors-path = ["$cache/mirror/hf"]
[accessibility]
offline = true
TOML
  for need in "$cache/mirror/git/llama.cpp.git" "$cache/mirror/hf/models" "$cache/wheels" "$cache/mirror/nvidia"; do
    [ -e "$need" ] || { say "missing $need: run tests/setup/sources.py first" >&2; return 1; }
  done
  launch git "$git_port" git daemon --export-all --reuseaddr --base-path="$cache/mirror/git" \
    --port="$git_port" --listen=0.0.0.0 "$cache/mirror/git"
  launch olah "$hf_port" "$olah" -c "$run/olah.toml"
  launch wheels "$wheels_port" python3 -m http.server "$wheels_port" --bind 0.0.0.0 --directory "$cache/wheels"
  launch nvidia "$nvidia_port" python3 -m http.server "$nvidia_port" --bind 0.0.0.0 --directory "$cache/mirror/nvidia"
}

stop() {
  for name in git olah wheels nvidia; do
    if running "$name"; then kill -- "-$(cat "$run/$name.pid")" 2>/dev/null || kill "$(cat "$run/$name.pid")" || true; fi
    rm -f "$run/$name.pid"
  done
  say "stopped"
}

status() {
  for name in git olah wheels nvidia; do
    if running "$name"; then say "$name running (pid $(cat "$run/$name.pid"))"; else say "$name stopped"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
