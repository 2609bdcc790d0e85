# Anvil: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
export ANVIL_DATA_DIR ?= $(CURDIR)/var
FORGE_PORT ?= 8000
DEMO_PORT ?= 8001

.PHONY: run test lint bench screenshots install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

$(VENV)/.installed: $(BIN)/python client/pyproject.toml forge/pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e client -e forge
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements/test.txt $(CONSTRAINTS)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -r requirements/test.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## Set up, migrate and seed a SQLite FORGE under var/, then serve it and the demo LIVE app.
## Other ports: make run FORGE_PORT=8010 DEMO_PORT=8011 (the printed addresses follow).
run: export ANVIL_PUBLIC_URL ?= http://127.0.0.1:$(FORGE_PORT)
run: install
	DEBUG=true $(BIN)/anvil-forge manage migrate --no-input
	DEBUG=true $(BIN)/anvil-forge demo
	DEBUG=true FORGE_PORT=$(FORGE_PORT) DEMO_PORT=$(DEMO_PORT) $(BIN)/python -m anvil_forge.devrun

## Set up and run every test (SQLite always; PostgreSQL too when ANVIL_TEST_DATABASE_URL is set).
test: install-test
	$(BIN)/ruff check .
	DJANGO_SETTINGS_MODULE=anvil_forge.settings_test $(BIN)/anvil-forge manage makemigrations --check --dry-run
	$(BIN)/pytest -m "not browser"
	@# Browser tests run in their own session: Playwright's sync API keeps an event loop running in the
	@# main thread for the rest of a session, which would break every later test that calls asyncio.run().
	$(BIN)/pytest -m browser tests/browser
	@if [ -n "$$ANVIL_TEST_DATABASE_URL" ]; then \
	  echo "== again on PostgreSQL: $$ANVIL_TEST_DATABASE_URL"; \
	  DATABASE_URL="$$ANVIL_TEST_DATABASE_URL" $(BIN)/pytest forge/tests tests -m "not browser"; \
	fi

## Retake the README's screenshots (docs/screenshots/) with the browser tests.
screenshots: install-test
	ANVIL_SCREENSHOT_DIR=docs/screenshots $(BIN)/pytest -m browser tests/browser

lint: install-test
	$(BIN)/ruff check .

$(VENV)/.installed-bench: $(VENV)/.installed-test requirements/bench.txt $(CONSTRAINTS)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -r requirements/bench.txt
	touch $@

## Run every benchmark (about eleven minutes on a quiet 2-core machine); figures in bench/results/, report in
## docs/benchmarks.md.
bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var
