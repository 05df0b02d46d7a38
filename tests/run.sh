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
setup_s=$(( $(date +%s) - start ))
echo "edge-llama: set-up took $setup_s s"
mkdir -p tests/artifacts "$EDGE_LLAMA_CACHE/ccache" "$EDGE_LLAMA_CACHE/apt-cuda"   # bind-mounted by the test hosts
# Fast tests first; each scenario after them. pytest's closing line counts everything.
set +e
python -m pytest -p no:cacheprovider -v --durations=0 --junitxml=tests/artifacts/junit.xml \
  tests/unit tests/test_lint.py tests/test_preflight.py tests/test_services_settings.py tests/test_model_fetch.py \
  tests/test_scenarios.py "$@"
rc=$?
set -e
tests/setup/mirrors.sh stop || true
trap - EXIT
suite_s=$(( $(date +%s) - start ))
# The closing line counts the tests (from pytest's JUnit XML) and says how long the whole suite took;
# the same figures go to tests/artifacts/suite-times.json for tests/bench/suite_times.py.
python - "$setup_s" "$suite_s" "$rc" <<'EOF' || echo "edge-llama: whole suite took $suite_s s (exit $rc)"
import json, subprocess, sys, xml.etree.ElementTree as ET
suite = ET.parse("tests/artifacts/junit.xml").getroot().find("testsuite")
tests, skipped = int(suite.get("tests")), int(suite.get("skipped"))
failed = int(suite.get("failures")) + int(suite.get("errors"))
commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
json.dump({"setup_s": int(sys.argv[1]), "suite_s": int(sys.argv[2]), "tests": tests, "failed": failed,
           "skipped": skipped, "commit": commit}, open("tests/artifacts/suite-times.json", "w"))
print("edge-llama: %d tests: %d passed, %d failed, %d skipped; whole suite %s s (exit %s)"
      % (tests, tests - failed - skipped, failed, skipped, sys.argv[2], sys.argv[3]))
EOF
exit $rc
