"""Shared fixtures: sources, posting to the collection API, running the pipeline, live servers and workers."""
import base64
import os

import orjson
import pytest

from cdp.pipeline import pipeline_process_batch
from profiles.models import Source


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
    def run():
        total = 0
        while processed := pipeline_process_batch():
            total += processed
        return total
    return run


@pytest.fixture
def subprocess_env(transactional_db):
    from django.db import connection

    s = connection.settings_dict
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{s['USER'] or 'postgres'}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    env["DEBUG"] = "false"
    env["SECRET_KEY"] = "test-only"
    return env
