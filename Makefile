# Two commands on a fresh machine:  make demo  (the quickstart on the embedded model)  and  make test.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast bench schemas clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles from source the first time (about 5 minutes on 2 cores); pip caches the wheel
	$(BIN)/python -m pip install --quiet -e '.[embedded,test,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/persona-factory run pipelines/quickstart.yaml --out out/quickstart

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

bench: install
	$(BIN)/python bench/throughput.py

schemas: install
	$(BIN)/persona-factory schemas export schemas

clean:
	rm -rf out build dist *.egg-info .pytest_cache
