# Two commands on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-quick lint check clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

## run: install, migrate the local SQLite database, create a demo session, serve
run: $(VENV)/.runtime
	DJANGO_DEBUG=1 $(BIN)/python manage.py migrate --noinput
	DJANGO_DEBUG=1 $(BIN)/python manage.py create_demo_session --base-url http://$(HOST):$(PORT)
	DJANGO_DEBUG=1 $(BIN)/python manage.py runserver $(HOST):$(PORT)

## test: lint, type-check, check migrations, run the whole suite
test: lint check
	$(BIN)/pytest

## test-quick: the edit-and-rerun loop: the suite without the `slow` tests
## (subprocesses, servers, the browser, Node.js, the fuzzer); no lint
test-quick: $(VENV)/.dev
	$(BIN)/pytest -m "not slow"

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

check: $(VENV)/.dev
	DJANGO_SETTINGS_MODULE=chatapi.test_settings $(BIN)/python manage.py check
	DJANGO_SETTINGS_MODULE=chatapi.test_settings $(BIN)/python manage.py makemigrations --check --dry-run

## bench: our API against a raw-psycopg ceiling (PostgreSQL on 127.0.0.1,
## Debian's wrk); writes docs/PERFORMANCE.md. BENCH_ARGS=--long adds the
## 100 000-request memory run.
bench: $(VENV)/.runtime
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .mypy_cache .ruff_cache interop/better-auth/node_modules interop/ai-sdk/node_modules
