# xrdmtl: two commands for a fresh machine — `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench model experiment clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip setuptools wheel
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m xrdmtl.cli.demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests benchmarks experiments
	$(BIN)/mypy

# Debian's chromium for the watch page's browser test (tests/cli/test_watch_page.py); needs root
browser:
	command -v chromium >/dev/null 2>&1 || (apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

model: $(STAMP)
	$(BIN)/python -m experiments.default_model

experiment: $(STAMP)
	$(BIN)/xrdmtl experiment --out docs/report

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
