#!/usr/bin/env bash
# Serves the app on 127.0.0.1:8000, with a Celery worker (and beat) when Redis is configured.
set -e
BIN=.venv/bin
if [ -n "${REDIS_URL:-}" ]; then
  $BIN/celery -A cdp worker -B -Q ingest -l warning --concurrency 2 &
  WORKER=$!
  trap 'kill $WORKER 2>/dev/null' EXIT
else
  echo "No REDIS_URL: tasks run in-process (embedded mode, SQLite under var/)."
fi
echo "Serving on http://127.0.0.1:8000  (admin /admin/, API docs /api/docs/)"
$BIN/python manage.py runserver 127.0.0.1:8000
