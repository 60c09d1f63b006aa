# PipeTwin: `make demo` and `make test` work on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := .twin/sample
DEMO_USER ?= demo
DEMO_PASSWORD ?= demo-password

.PHONY: demo test setup system venv node db lint clean bench

demo: setup
	$(BIN)/twin sample --out $(DEMO) --defects
	$(BIN)/twin ingest survey --points $(DEMO)/points.csv --segments $(DEMO)/segments.csv
	$(BIN)/twin summary
	$(BIN)/twin tiles build
	$(BIN)/twin user add $(DEMO_USER) --role admin --password '$(DEMO_PASSWORD)' --exist-ok
	$(BIN)/twin broker start
	$(BIN)/twin sensors simulate --register --burst --duration 900 > .twin/simulate.log 2>&1 &
	@echo "Sign in as $(DEMO_USER) / $(DEMO_PASSWORD); Ctrl-C stops the server."
	$(BIN)/twin serve

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

setup: system venv node db

system:
	@scripts/system-deps.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# Front-end packages (CesiumJS, the glTF validator), pinned by package-lock.json.
node: node_modules/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The private cluster under .twin/ unless TWIN_DATABASE_URL names another database.
db: venv
	@if [ -z "$$TWIN_DATABASE_URL" ]; then $(BIN)/twin db start; fi
	$(BIN)/twin db upgrade

lint: venv
	$(BIN)/ruff check twin ingest analysis tiles exchange live documents api tests bench

bench: setup
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/tiles.py
	$(BIN)/python bench/shutoff.py
	$(BIN)/python bench/analysis.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/viewer.py
	$(BIN)/python bench/sensors.py

clean:
	-$(BIN)/twin broker stop
	-$(BIN)/twin db stop
	rm -rf .twin
