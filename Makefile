# Two commands on a fresh machine:  make demo  (the quickstart on the embedded model)  and  make test.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# llama-cpp-python compiles from source (10 minutes or so on 2 cores). Built for the machine it runs
# on, llama.cpp's AVX-512 kernels crash on some CPUs on any prompt of more than one token (a
# segmentation fault in decode, seen on SmolLM2's Q4_1 weights); so it is built without them, once
# per machine, into a wheel kept outside the work tree, and installed from there.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF
WHEELS ?= $(HOME)/.cache/persona-factory/wheels
LLAMA_WHEEL_STAMP := $(WHEELS)/llama-cpp-python-$(LLAMA_CPP_VERSION)-no-avx512.built

# The embedded model is served by llama.cpp's own server, which decodes several requests at once
# (parallel slots, continuous batching). It is built from the same llama-cpp-python release on PyPI:
# its source distribution vendors llama.cpp at the commit that release was tested with. The
# archive's SHA-256 is pinned here and checked before anything in it is built; the web UI, HTTPS
# and every download at build time are off.
LLAMA_SDIST_SHA256 := 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
LLAMA_SERVER := $(WHEELS)/llama-server-$(LLAMA_CPP_VERSION)-no-avx512
LLAMA_SERVER_CMAKE_ARGS := $(LLAMA_CMAKE_ARGS) -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON \
	-DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF

.PHONY: install demo lint test test-fast bench schemas clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(LLAMA_WHEEL_STAMP): | $(BIN)/python
	mkdir -p $(WHEELS)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel --quiet --no-cache-dir --no-deps \
		'llama-cpp-python==$(LLAMA_CPP_VERSION)' -w $(WHEELS)
	touch $@

$(LLAMA_SERVER): | $(BIN)/python
	rm -rf $(WHEELS)/llama-server-src && mkdir -p $(WHEELS)/llama-server-src
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: \
		'llama-cpp-python==$(LLAMA_CPP_VERSION)' -d $(WHEELS)/llama-server-src
	echo '$(LLAMA_SDIST_SHA256)  $(WHEELS)/llama-server-src/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz' | sha256sum -c --quiet
	tar -xzf $(WHEELS)/llama-server-src/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz -C $(WHEELS)/llama-server-src
	cmake -S $(WHEELS)/llama-server-src/llama_cpp_python-$(LLAMA_CPP_VERSION)/vendor/llama.cpp \
		-B $(WHEELS)/llama-server-src/build $(LLAMA_SERVER_CMAKE_ARGS) > /dev/null
	cmake --build $(WHEELS)/llama-server-src/build --target llama-server -j $$(nproc) > /dev/null
	cp $(WHEELS)/llama-server-src/build/bin/llama-server $@.partial && mv $@.partial $@
	rm -rf $(WHEELS)/llama-server-src

$(STAMP): pyproject.toml Makefile $(LLAMA_WHEEL_STAMP) $(LLAMA_SERVER) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(BIN)/python -m pip install --quiet --find-links $(WHEELS) 'llama-cpp-python==$(LLAMA_CPP_VERSION)' -e '.[embedded,review,test]'
	install -m 755 $(LLAMA_SERVER) $(BIN)/llama-server
	touch $(STAMP)

# The review app's browser test drives Debian's Chromium; installed once per machine where missing
# (as root, or through sudo).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y --no-install-recommends chromium > /dev/null || \
		{ $(if $(filter 0,$(shell id -u)),,sudo) apt-get update > /dev/null && \
		  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y --no-install-recommends chromium > /dev/null; }

install: $(STAMP) $(CHROMIUM)

demo: install
	$(BIN)/persona-factory run pipelines/quickstart.yaml --out out/quickstart

# Lint, format and types first: they take seconds, the tests take minutes.
lint: install
	$(BIN)/ruff check factory tests bench
	$(BIN)/ruff format --check factory tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

bench: install
	$(BIN)/python bench/throughput.py

schemas: install
	$(BIN)/persona-factory schemas export schemas

clean:
	rm -rf out build dist *.egg-info .pytest_cache
