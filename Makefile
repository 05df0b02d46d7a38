# edge-llama: the two commands of the README, and the pieces of the second one.
.PHONY: demo test lint unit

## demo: provision the local simulated Orin (a podman systemd container) and print the chat URL
demo:
	tests/setup/demo.sh

## test: the whole suite from a fresh machine (set-up, unit tests, lint, molecule scenarios)
test:
	tests/run.sh

## unit, lint: the fast parts (need a prior `make test` or tests/setup/bootstrap.sh)
unit:
	. tests/setup/env.sh && python -m pytest tests/unit
lint:
	. tests/setup/env.sh && python -m pytest tests/test_lint.py
