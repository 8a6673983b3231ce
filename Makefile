# harken: `make run` to try it, `make test` to check it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8765
PIP := $(BIN)/pip --disable-pip-version-check -q

.PHONY: run install install-quality test lint typecheck sdk-venvs llama-server bench clean

run: install
	$(BIN)/harken serve --host $(HOST) --port $(PORT)

install: $(VENV)/.installed

# llama-cpp-python ships only as an sdist: build it once, portably (no -march=native), into
# .wheels/ inside the repo, so reinstalls take seconds. MODELS.md has the measurements.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF

# Model packages that only carry a model file are installed without their dependencies (Smart
# Turn comes out of the pipecat-ai wheel, which would bring a whole framework); the catalog
# (src/harken/engines/catalog.py, `no_deps=True`) names them.
NO_DEPS_MODELS := from harken.engines import catalog as c; \
	print(*c.no_deps_requirements(c.INSTALL_DEFAULT))

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip wheel
	ls .wheels/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
		{ echo "building llama-cpp-python $(LLAMA_VERSION) from its sdist (3-8 minutes)..."; \
		  CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
		  $(PIP) wheel --no-deps llama-cpp-python==$(LLAMA_VERSION) -w .wheels; }
	$(PIP) install --find-links .wheels -e '.[dev,models]'
	$(PIP) install --no-deps $$($(BIN)/python -c '$(NO_DEPS_MODELS)')
	$(BIN)/harken models install
	$(BIN)/python scripts/fetch_testdata.py
	touch $@

# Qwen2.5-Coder-1.5B is the default language model and part of `install` now; this target stays
# for old instructions.
install-quality: install

# llama.cpp's own OpenAI-compatible server, built from the same pinned sdist as the Python
# binding (its vendored llama.cpp), for the remote-provider tests and benchmarks (4-8 minutes
# once; nothing is downloaded but the sdist from the package index).
LLAMA_SERVER := build/llama.cpp/llama-server
LLAMA_SRC := build/llama.cpp/llama_cpp_python-$(LLAMA_VERSION)/vendor/llama.cpp
LLAMA_SERVER_ARGS := -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
	-DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON

llama-server: $(LLAMA_SERVER)

$(LLAMA_SERVER): | $(VENV)/.installed
	mkdir -p build/llama.cpp
	$(PIP) download --no-deps --no-binary :all: llama-cpp-python==$(LLAMA_VERSION) -d build/llama.cpp
	tar xzf build/llama.cpp/llama_cpp_python-$(LLAMA_VERSION).tar.gz -C build/llama.cpp
	echo "building llama-server $(LLAMA_VERSION) (4-8 minutes)..."
	cmake -S $(LLAMA_SRC) -B build/llama.cpp/cmake $(LLAMA_SERVER_ARGS) >/dev/null
	cmake --build build/llama.cpp/cmake --target llama-server -j2 >/dev/null
	cp build/llama.cpp/cmake/bin/llama-server $@.tmp && mv $@.tmp $@
	rm -rf build/llama.cpp/cmake build/llama.cpp/llama_cpp_python-$(LLAMA_VERSION)*

# The official Deepgram SDKs live in their own virtualenvs: they pin websockets
# and friends differently from harken, and the tests drive them as subprocesses.
# 7.x is the Python SDK people install today; the JavaScript SDK (@deepgram/sdk 5.x, pinned in
# tests/official/js/package-lock.json) goes into tests/official/js/node_modules, with npm's
# cache under build/ (nothing is cached outside the repository).
JS_SDK := tests/official/js

sdk-venvs: .venv-dg4/.installed .venv-dg3/.installed .venv-dg7/.installed \
	$(JS_SDK)/node_modules/.installed

.venv-dg4/.installed:
	$(PYTHON) -m venv .venv-dg4
	.venv-dg4/bin/pip --disable-pip-version-check -q install deepgram-sdk==4.8.1
	touch $@

.venv-dg3/.installed:
	$(PYTHON) -m venv .venv-dg3
	.venv-dg3/bin/pip --disable-pip-version-check -q install deepgram-sdk==3.10.1
	touch $@

.venv-dg7/.installed:
	$(PYTHON) -m venv .venv-dg7
	.venv-dg7/bin/pip --disable-pip-version-check -q --no-cache-dir install deepgram-sdk==7.17.0
	touch $@

$(JS_SDK)/node_modules/.installed: $(JS_SDK)/package.json $(JS_SDK)/package-lock.json
	npm ci --prefix $(JS_SDK) --cache $(CURDIR)/build/npm-cache --no-audit --no-fund
	touch $@

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy --strict

test: install sdk-venvs llama-server lint typecheck
	sh scripts/install_chromium.sh
	sh scripts/install_asterisk_sounds.sh
	sh scripts/install_nginx.sh
	$(BIN)/pytest -q --cov=harken --cov-branch --cov-report=term:skip-covered
	$(BIN)/python tests/check_coverage.py

bench: install
	$(BIN)/python benchmarks/codec_bench.py
	$(BIN)/python benchmarks/capacity_bench.py

clean:
	rm -rf $(VENV) .venv-dg4 .venv-dg3 .venv-dg7 $(JS_SDK)/node_modules build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage
