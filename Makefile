# Two set-up commands: `make run` to try the product, `make test` to run the whole suite.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/cdp
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test bench

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt

run: install
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py seed_demo --profiles $${DEMO_PROFILES:-300} --if-empty
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py create_demo_users
	DEBUG=$${DEBUG:-true} bash scripts/serve.sh

test: install
	bash scripts/browser.sh
	DEBUG=false SECRET_KEY=test-only \
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	$(BIN)/python -m scripts.check_services && \
	DEBUG=false SECRET_KEY=test-only \
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python manage.py bench ingest --events $${EVENTS:-200000}
