# Shortcuts; the scripts are the real thing (scripts/test is what CI runs).
# Pass pytest arguments with ARGS, e.g. make test ARGS="tests/faults -x".
.PHONY: setup test lint demo bench

setup:
	bash scripts/setup

test:
	bash scripts/test $(ARGS)

lint: setup
	.venv/bin/ruff check proxyd tests bench demo
	.venv/bin/mypy

demo: setup
	bash scripts/demo

bench: setup
	bash scripts/bench
