# Two set-up commands: `make run` to try the product, `make test` to run the whole suite.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TEST_ENV := DEBUG=false SECRET_KEY=test-only \
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/cdp} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/15}
RUN_ENV := DEBUG=$${DEBUG:-true}

.PHONY: install run test browser bench

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt

run: install
	$(RUN_ENV) $(BIN)/python manage.py migrate --noinput
	$(RUN_ENV) $(BIN)/python manage.py seed_demo --profiles $${DEMO_PROFILES:-300} --if-empty
	$(RUN_ENV) $(BIN)/python manage.py create_demo_users
	@if [ -n "$$REDIS_URL" ]; then \
		$(RUN_ENV) $(BIN)/celery -A cdp worker -B -l warning --concurrency 2 & \
	else echo "No REDIS_URL: tasks run in-process (embedded mode, SQLite under var/)."; fi; \
	echo "Serving on http://127.0.0.1:8000 (admin /admin/, API docs /api/docs/)"; \
	$(RUN_ENV) $(BIN)/python manage.py runserver 127.0.0.1:8000

# The browser tests drive Debian's chromium (never a downloaded browser); install it where we can.
browser:
	@[ -x /usr/bin/chromium ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); } || \
		echo "Debian's chromium is missing (apt-get install chromium): browser tests skip, or fail under CI=true."

test: install browser
	$(TEST_ENV) $(BIN)/python manage.py check_services
	$(TEST_ENV) $(BIN)/python -m pytest

bench: install
	$(BIN)/python manage.py bench ingest --events $${EVENTS:-200000}
