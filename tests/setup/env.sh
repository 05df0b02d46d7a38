# shellcheck shell=bash
# Environment for the project's scripts and tests; source it: `. tests/setup/env.sh`.
EDGE_LLAMA_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export EDGE_LLAMA_REPO
export EDGE_LLAMA_CACHE="$EDGE_LLAMA_REPO/.cache"
export CONTAINERS_CONF="$EDGE_LLAMA_REPO/tests/setup/containers.conf"
export ANSIBLE_CONFIG="$EDGE_LLAMA_REPO/ansible.cfg"
export PATH="$EDGE_LLAMA_REPO/.venv/bin:$PATH"
export VIRTUAL_ENV="$EDGE_LLAMA_REPO/.venv"
export ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}"
export PY_COLORS="${PY_COLORS:-0}"
