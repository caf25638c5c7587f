# One entry point for developers and CI. Everything a fresh clone needs is installed from here.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR):$(CURDIR)/gen
export CASHBACK_ENV ?= dev
# Playwright drives Debian's chromium (make tools); it never downloads a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
AXE := tests/browser/node_modules/axe-core/axe.min.js

.PHONY: help venv tools protos migrate run test lint bench clean release-protos

help:
	@echo "make run      - install, generate, migrate and start the whole stack (embedded default)"
	@echo "make test     - run the whole test suite"
	@echo "make lint     - ruff, buf lint, buf breaking against the released protos, mypy (strict)"
	@echo "make protos   - generate Python code and stubs from protos/"
	@echo "make migrate  - apply every service's migrations"
	@echo "make tools    - Debian and npm tools the tests use (docker-compose, wrk, chromium, axe-core)"

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
# chromium (Debian's package) is the browser of tests/browser; npm installs axe-core, the accessibility
# checker those tests inject into each page (pinned in tests/browser/package-lock.json).
tools: $(AXE)
	@command -v docker-compose >/dev/null || { \
	  echo "installing docker-compose (Debian package) to validate docker-compose.yml"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null) \
	  || { echo "cannot install docker-compose: install it by hand (it only reads the file)"; exit 1; }; }
	@command -v wrk >/dev/null || { \
	  echo "installing wrk (Debian package), the load generator of make bench"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) \
	  || { echo "cannot install wrk: install it by hand (make bench postbacks needs it)"; exit 1; }; }
	@command -v chromium >/dev/null || { \
	  echo "installing chromium (Debian package), the browser of the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null) \
	  || { echo "cannot install chromium: install it by hand (tests/browser needs /usr/bin/chromium)"; exit 1; }; }
	@for tool in node:nodejs curl:curl openssl:openssl; do command -v $${tool%%:*} >/dev/null || { \
	  echo "installing $${tool#*:} (Debian package): docs/partners.md's examples are run by the tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $${tool#*:} >/dev/null) \
	  || { echo "cannot install $${tool#*:}: install it by hand"; exit 1; }; }; done

$(AXE): tests/browser/package.json tests/browser/package-lock.json
	@command -v npm >/dev/null || { \
	  echo "installing npm (Debian package), to install axe-core for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null) \
	  || { echo "cannot install npm: install it by hand"; exit 1; }; }
	npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
	touch $(AXE)

test: gen/.stamp tools
	$(PY) -m pytest $(PYTEST_ARGS)

lint: gen/.stamp
	$(VENV)/bin/ruff check .
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf breaking --against protos/released.binpb
	$(VENV)/bin/mypy

# After a release: the protos as released, which `make lint` keeps later changes compatible with.
release-protos: $(STAMP)
	$(VENV)/bin/buf build -o protos/released.binpb

bench: gen/.stamp
	$(PY) -m scripts.bench $(BENCH)

clean:
	rm -rf gen var
