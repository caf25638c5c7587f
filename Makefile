# One entry point for developers and CI. Everything a fresh clone needs is installed from here.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR):$(CURDIR)/gen
export CASHBACK_ENV ?= dev

.PHONY: help venv tools protos migrate run test lint bench clean

help:
	@echo "make run      - install, generate, migrate and start the whole stack (embedded default)"
	@echo "make test     - run the whole test suite"
	@echo "make lint     - ruff and buf lint"
	@echo "make protos   - generate Python code and stubs from protos/"
	@echo "make migrate  - apply every service's migrations"

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

gen/.stamp: $(STAMP) $(shell find protos -name '*.proto')
	$(PY) scripts/gen_protos.py
	touch gen/.stamp

protos: $(STAMP)
	$(PY) scripts/gen_protos.py
	touch gen/.stamp

migrate: gen/.stamp
	$(PY) -m services.common.migrate all

run: gen/.stamp
	$(PY) -m scripts.run_stack

# docker-compose (Debian's package) validates docker-compose.yml; no Docker engine is needed.
# wrk (Debian's package) is the load generator of `make bench` (postbacks).
tools:
	@command -v docker-compose >/dev/null || { \
	  echo "installing docker-compose (Debian package) to validate docker-compose.yml"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null) \
	  || { echo "cannot install docker-compose: install it by hand (it only reads the file)"; exit 1; }; }
	@command -v wrk >/dev/null || { \
	  echo "installing wrk (Debian package), the load generator of make bench"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) \
	  || { echo "cannot install wrk: install it by hand (make bench postbacks needs it)"; exit 1; }; }
	@for tool in node:nodejs curl:curl openssl:openssl; do command -v $${tool%%:*} >/dev/null || { \
	  echo "installing $${tool#*:} (Debian package): docs/partners.md's examples are run by the tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $${tool#*:} >/dev/null) \
	  || { echo "cannot install $${tool#*:}: install it by hand"; exit 1; }; }; done

test: gen/.stamp tools
	$(PY) -m pytest $(PYTEST_ARGS)

lint: gen/.stamp
	$(VENV)/bin/ruff check .
	$(VENV)/bin/buf lint

bench: gen/.stamp
	$(PY) -m scripts.bench $(BENCH)

clean:
	rm -rf gen var
