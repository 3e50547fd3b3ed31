"""Shared fixtures: sources, posting to the collection API, running the pipeline, live servers and workers."""
import base64
import os
import re
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest

from django.urls import reverse

from cdp.pipeline import pipeline_drain
from profiles.models import Source


# The data migrations that seed rows every installation has (roles, identity rules, purposes). Idempotent.
SEED_MIGRATIONS = [("profiles", "0002_rules_and_roles"), ("profiles", "0007_personal_data_permission"),
                   ("consent", "0002_purposes_roles_append_only"), ("consent", "0004_privacy_request_roles"),
                   ("consent", "0007_retention"), ("consent", "0010_consent_sources_and_audit_viewer"),
                   ("segments", "0002_destination_roles"), ("segments", "0003_segment_roles"),
                   ("segments", "0008_learning_roles"),
                   ("campaigns", "0002_campaign_roles")]


@pytest.fixture(autouse=True)
def _local_receivers(settings):
    """The tests' webhook receivers listen on 127.0.0.1; tests of the refusal turn this off."""
    settings.DESTINATIONS_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture(autouse=True)
def _seed_rows_for_transactional_tests(request):
    """A transactional test ends by emptying every table (Django's flush), seeded rows included, so a later
    one would run without roles or purposes. Each transactional test gets them back first."""
    marker = request.node.get_closest_marker("django_db")
    if "transactional_db" not in request.fixturenames and not (marker and marker.kwargs.get("transaction")):
        return
    import importlib

    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    request.getfixturevalue("transactional_db")
    historical = MigrationLoader(connection).project_state().apps
    with connection.schema_editor() as editor:
        for app, name in SEED_MIGRATIONS:
            importlib.import_module(f"{app}.migrations.{name}").forwards(historical, editor)


@pytest.fixture
def source(db):
    return Source.objects.create(name="web")


@pytest.fixture
def post_collect(client, source):
    def post(kind, body, *, write_key=None, headers=None, raw=None):
        key = source.write_key if write_key is None else write_key
        auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        return client.post(f"/v1/{kind}", data=raw if raw is not None else orjson.dumps(body),
                           content_type="application/json", HTTP_AUTHORIZATION=auth, **(headers or {}))
    return post


@pytest.fixture
def drain():
    return pipeline_drain


@pytest.fixture
def subprocess_env(transactional_db):
    from django.db import connection

    s = connection.settings_dict
    env = dict(os.environ)
    # A Unix socket directory (the embedded PostgreSQL) travels percent-encoded in the URL.
    host = quote(s["HOST"] or "127.0.0.1", safe="")
    env["DATABASE_URL"] = f"postgres://{s['USER'] or 'postgres'}@{host}:{s['PORT'] or 5432}/{s['NAME']}"
    env["DEBUG"] = "false"
    env["SECRET_KEY"] = "test-only"
    env["DESTINATIONS_ALLOW_PRIVATE_NETWORKS"] = "true"
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(check, *, seconds: float, what: str):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


@pytest.fixture
def wait_until():
    return _wait_until


@pytest.fixture
def gunicorn_server(subprocess_env):
    """A real gunicorn process serving the app on the test database; yields its base URL."""
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    port = _free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "cdp.wsgi", "-w", "2", "-b",
                             f"127.0.0.1:{port}", "--log-level", "warning"], env=subprocess_env)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            urllib.request.urlopen(url + "/api/schema/", timeout=1)
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True
    try:
        _wait_until(up, seconds=30, what="gunicorn")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def start_celery_worker(subprocess_env):
    """Starts a real Celery worker on Redis, processing for the test database: the plain `celery -A cdp worker`
    an operator types (every queue), solo pool; returns the Popen. Every worker started is stopped at teardown."""
    import subprocess
    import sys
    from pathlib import Path

    started = []

    def start():
        proc = subprocess.Popen([str(Path(sys.executable).parent / "celery"), "-A", "cdp", "worker",
                                 "--pool", "solo", "-l", "warning", "--without-gossip", "--without-mingle"],
                                env=subprocess_env)
        started.append(proc)
        return proc
    yield start
    for proc in started:
        proc.terminate()
        proc.wait(20)


@pytest.fixture
def celery_worker_process(subprocess_env, start_celery_worker):
    """A real Celery worker on an emptied Redis database; yields the Popen."""
    import redis

    redis.Redis.from_url(subprocess_env["REDIS_URL"]).flushdb()
    return start_celery_worker()


# Playwright's sync API runs an event loop in this thread; Django's ORM calls from the test body are still
# plain synchronous calls, so the async-safety check would only get in the way here.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser_page():
    """A headless page in Debian's chromium, and the JavaScript errors it has seen."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing; CI must provide Debian's chromium package.")
        pytest.skip(f"{CHROMIUM} is not installed")
    from django.db import connections
    from playwright.sync_api import sync_playwright

    # Playwright runs an asyncio loop in this thread, and Django keeps connections per context while a loop
    # runs: close them on both sides of the browser so none is left open when the test database is dropped.
    connections.close_all()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.set_default_timeout(15_000)
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page, errors
        browser.close()
        connections.close_all()


def log_in(page, live_server, username, password):
    page.goto(live_server.url + reverse("dashboard"))
    page.wait_for_url(re.compile(r"/accounts/login/"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + reverse("dashboard"))


