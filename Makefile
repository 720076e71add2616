# Two commands for a newcomer: `make run` and `make test`. Everything else is installed here.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The newest Python 3.11+ this machine has. Django 6 needs 3.12+; with only 3.11 the Django 5.2 LTS
# line is installed instead (docs/adr/001-python-and-django-versions.md).
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 $$(ls -d $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV) python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT
# settings' var folder (PORTAL_VAR_DIR): the database, broker, cache and the .env make run leaves for manage.py
VAR := $(or $(PORTAL_VAR_DIR),var)

.PHONY: help run test lint format bench bench-import setup

help:
	@echo "make run    start the portal with a seeded demo programme, a Celery worker and beat (http://127.0.0.1:$(PORT))"
	@echo "make test   run the test suite (SQLite by default; DATABASE_URL / CELERY_BROKER_URL for PostgreSQL / Redis)"
	@echo "make lint   ruff check and format check"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# nhsuk-frontend's Sass compiled without its @font-face (no request to assets.nhs.uk: frontend/nhsuk-portal.scss)
NHSUK_CSS := build/nhsuk/nhsuk-portal.min.css
$(NHSUK_CSS): frontend/nhsuk-portal.scss node_modules/.installed
	@mkdir -p $(@D)
	node_modules/.bin/sass --load-path=node_modules --style=compressed --no-source-map $< $@

setup: $(VENV)/.installed node_modules/.installed $(NHSUK_CSS)
	@mkdir -p $(VAR)

run: export DEBUG := 1
# The demo's simulated engine: 1 GB/s per copy (a demo wave takes minutes, not hours) and a realistic mix
# of failures (throttling that retries by itself, a few bad credentials and full mailboxes for triage).
run: export SIMULATED_THROUGHPUT ?= 1000000000
run: export SIMULATED_FAILURE_RATES ?= THROTTLED=0.03,AUTH_FAILED=0.01,OVER_QUOTA=0.005
# ... and its pre-flight: the share of mailboxes a readiness check blocks, by reason (about 6% in all).
run: export SIMULATED_PREFLIGHT_RATES ?= NOT_LICENSED=0.03,TARGET_MISSING=0.015,OVER_QUOTA=0.01,ITEM_TOO_LARGE=0.005
run: setup
	@{ echo "# Written by make run: manage.py reads it (the environment wins), so commands act on this portal."; \
	  echo "DEBUG=1"; echo "PORT=$(PORT)"; for v in DATABASE_URL CELERY_BROKER_URL CACHE_URL; do \
	    if [ -n "$${!v:-}" ]; then echo "$$v=$${!v}"; fi; done; } > $(VAR)/.env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/honcho -f Procfile.dev start -p $(PORT)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every benchmark, or BENCH="pages load"; README's table is written from their output (bench/run_all.py).
bench: setup
	$(BIN)/python -m bench.run_all $(BENCH)

bench-import: setup
	$(BIN)/python -m bench.import_inventory --rows $${ROWS:-2100000}
