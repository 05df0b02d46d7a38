#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set-up, unit tests, lint, then the molecule scenarios.
# Usage: tests/run.sh [extra pytest arguments]     (make test)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
start=$(date +%s)
tests/setup/bootstrap.sh
# shellcheck source=tests/setup/env.sh
. tests/setup/env.sh
python tests/setup/sources.py
tests/setup/mirrors.sh start
trap 'tests/setup/mirrors.sh stop || true' EXIT
echo "edge-llama: set-up took $(( $(date +%s) - start )) s"
mkdir -p tests/artifacts "$EDGE_LLAMA_CACHE/ccache" "$EDGE_LLAMA_CACHE/apt-cuda"   # bind-mounted by the test hosts
# Fast tests first; each scenario after them. pytest's closing line counts everything.
set +e
python -m pytest -p no:cacheprovider -v --durations=0 \
  tests/unit tests/test_lint.py tests/test_preflight.py tests/test_services_settings.py tests/test_model_fetch.py \
  tests/test_scenarios.py "$@"
rc=$?
set -e
echo "edge-llama: whole suite took $(( $(date +%s) - start )) s"
exit $rc
