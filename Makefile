# Two set-up commands: `make run` to try the product, `make test` to run the whole suite.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test browser bench

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt

run: install
	$(BIN)/python -m cdp.serve

# The browser tests drive Debian's chromium (never a downloaded browser); install it where we can.
browser:
	@[ -x /usr/bin/chromium ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); } || \
		echo "Debian's chromium is missing (apt-get install chromium): browser tests skip, or fail under CI=true."

test: install browser
	$(BIN)/python -m tests.environment $(BIN)/python -m pytest

bench: install
	$(BIN)/python manage.py bench ingest --events $${EVENTS:-200000}
