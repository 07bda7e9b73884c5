PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: up test bench lint install install-dev clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'

up: install
	@test -f "$${MOLTBOT_HOME:-$$HOME/.moltbot}/config.json" || $(BIN)/moltbot init
	$(BIN)/moltbot up

test: install-dev
	$(BIN)/python -m pytest

bench: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python -m benchmarks

lint: install-dev
	$(BIN)/ruff format --check moltbot actors tests benchmarks
	$(BIN)/ruff check moltbot actors tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
