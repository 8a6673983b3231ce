# harken: `make run` to try it, `make test` to check it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8765
PIP := $(BIN)/pip --disable-pip-version-check -q

.PHONY: run install test lint typecheck unit sdk-venvs bench clean

run: install
	$(BIN)/harken serve --host $(HOST) --port $(PORT)

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip wheel
	$(PIP) install -e '.[dev]'
	touch $@

# The official Deepgram SDKs live in their own virtualenvs: they pin websockets
# and friends differently from harken, and the tests drive them as subprocesses.
sdk-venvs: .venv-dg4/.installed .venv-dg3/.installed

.venv-dg4/.installed:
	$(PYTHON) -m venv .venv-dg4
	.venv-dg4/bin/pip --disable-pip-version-check -q install deepgram-sdk==4.8.1
	touch $@

.venv-dg3/.installed:
	$(PYTHON) -m venv .venv-dg3
	.venv-dg3/bin/pip --disable-pip-version-check -q install deepgram-sdk==3.10.1
	touch $@

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy --strict

test: install sdk-venvs lint typecheck
	$(BIN)/pytest -q --cov=harken --cov-branch --cov-report=term:skip-covered
	$(BIN)/python tests/check_coverage.py

bench: install
	$(BIN)/python benchmarks/codec_bench.py
	$(BIN)/python benchmarks/capacity_bench.py

clean:
	rm -rf $(VENV) .venv-dg4 .venv-dg3 build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage
