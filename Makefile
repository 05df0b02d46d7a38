# edge-llama: the two commands of the README, and the pieces of the second one.
.PHONY: demo test lint unit
# The recipes source tests/setup/env.sh, which is bash (make's default /bin/sh is dash on Debian).
SHELL := /bin/bash

## demo: provision the local simulated Orin (a podman systemd container) and print the chat URL
demo:
	tests/setup/demo.sh

## test: the whole suite from a fresh machine (set-up, unit tests, lint, molecule scenarios)
test:
	tests/run.sh

## unit, lint: the fast parts (set up what they need first: the controller's virtualenv)
unit:
	tests/setup/bootstrap.sh --for unit && . tests/setup/env.sh && python -m pytest -p no:cacheprovider tests/unit
lint:
	tests/setup/bootstrap.sh --for unit && . tests/setup/env.sh && python -m pytest -p no:cacheprovider tests/test_lint.py
