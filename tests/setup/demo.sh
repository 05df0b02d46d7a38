#!/usr/bin/env bash
# The main job on the built-in default target: a simulated IGX Orin on this machine.
#
# Brings up `edge-llama-orin-sim`, a podman container booting real systemd and sharing this
# machine's network, provisions it with site.yml and the local inventory (CPU backend, a current
# llama.cpp and SmolLM2-135M-Instruct from offline sources served by local git and Hugging Face
# mirrors), asks the OpenAI endpoint one question and prints the chat URL.
# Usage: tests/setup/demo.sh [ansible-playbook arguments]     (make demo)
#        tests/setup/demo.sh --destroy                        (remove the simulated Orin)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
started=$(date +%s)
name=edge-llama-orin-sim
image=${EDGE_LLAMA_TESTHOST_IMAGE:-localhost/edge-llama-testhost:bookworm}
# The port its sshd listens on (inventory/local/hosts.yml reaches it there).
ssh_port=22022

tests/setup/bootstrap.sh --for demo
# shellcheck source=tests/setup/env.sh
. tests/setup/env.sh

if [ "${1:-}" = "--destroy" ]; then
  podman rm -f -t 5 "$name" >/dev/null 2>&1 || true
  echo "edge-llama: removed $name"
  exit 0
fi

python tests/setup/sources.py
tests/setup/mirrors.sh start
trap 'tests/setup/mirrors.sh stop >/dev/null 2>&1 || true' EXIT

mkdir -p "$EDGE_LLAMA_CACHE/ccache"
# A container podman calls running but cannot enter (its runtime state lost, e.g. /run cleared under it)
# is started again from the image: provisioning it would time out on every connection.
if podman container exists "$name" && [ "$(podman inspect -f '{{.State.Running}}' "$name")" = "true" ] \
    && ! podman exec "$name" true >/dev/null 2>&1; then
  echo "edge-llama: $name cannot be entered; starting it again from the image"
  podman rm -f -t 5 "$name" >/dev/null 2>&1 || true
fi
# One made before the playbooks reached it over SSH (no host key mounted) is started again too.
if podman container exists "$name" \
    && ! podman inspect -f '{{range .Mounts}}{{.Destination}} {{end}}' "$name" | grep -q ssh_host_ed25519_key; then
  echo "edge-llama: $name predates the SSH connection; starting it again from the image"
  podman rm -f -t 5 "$name" >/dev/null 2>&1 || true
fi
if ! podman container exists "$name"; then
  echo "edge-llama: starting the simulated Orin $name"
  # It shares this machine's network, so its sshd listens on 127.0.0.1:$ssh_port, not on 22
  # (inventory/local/hosts.yml); the keys are the set-up's (tests/setup/bootstrap.sh).
  printf 'Port %s\nListenAddress 127.0.0.1\n' "$ssh_port" > "$EDGE_LLAMA_CACHE/ssh/demo-sshd.conf"
  podman run -d --name "$name" --hostname orin-sim --network host --privileged --systemd=always \
    -v "$EDGE_LLAMA_CACHE/ccache:/var/cache/edge-llama/ccache:rw" \
    -v "$EDGE_LLAMA_CACHE/ssh/ssh_host_ed25519_key:/etc/ssh/ssh_host_ed25519_key:ro" \
    -v "$EDGE_LLAMA_CACHE/ssh/authorized_keys:/root/.ssh/authorized_keys:ro" \
    -v "$EDGE_LLAMA_CACHE/ssh/demo-sshd.conf:/etc/ssh/sshd_config.d/edge-llama-demo.conf:ro" \
    "$image" /sbin/init >/dev/null
elif [ "$(podman inspect -f '{{.State.Running}}' "$name")" != "true" ]; then
  podman start "$name" >/dev/null
fi
# Reached as the playbook reaches it: over SSH, once its sshd answers (a second or two after the start).
ssh_to_sim=(ssh -p "$ssh_port" -i "$EDGE_LLAMA_CACHE/ssh/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes
            -o UserKnownHostsFile="$EDGE_LLAMA_CACHE/ssh/known_hosts" -o StrictHostKeyChecking=yes root@127.0.0.1)
for _ in $(seq 60); do "${ssh_to_sim[@]}" true 2>/dev/null && break; sleep 1; done
state=$("${ssh_to_sim[@]}" systemctl is-system-running --wait 2>&1 || true)
echo "edge-llama: $name answers over SSH on 127.0.0.1:$ssh_port; systemd is $state"

EDGE_LLAMA_MIRROR_HOST=127.0.0.1 ansible-playbook -i inventory/local site.yml "$@"

question="What is the capital of France?"
answer=$(python - "$question" <<'PY'
import sys
from openai import OpenAI
client = OpenAI(base_url="http://127.0.0.1:8081/v1", api_key="unused")
reply = client.chat.completions.create(
    model="llama_2", temperature=0, max_tokens=48,
    messages=[{"role": "system", "content": "You are a helpful AI assistant."},
              {"role": "user", "content": sys.argv[1]}])
print(reply.choices[0].message.content.strip())
PY
)
cat <<EOT

edge-llama: the simulated Orin is serving.
  asked "$question" through the OpenAI endpoint: $answer
  chat app:          http://127.0.0.1:7860/
  OpenAI endpoint:   http://127.0.0.1:8081/v1   (model "llama_2")
  llama.cpp server:  http://127.0.0.1:8080/
Remove it with: tests/setup/demo.sh --destroy
edge-llama: make demo took $(( $(date +%s) - started )) s on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))
EOT
