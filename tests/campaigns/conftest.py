"""Fixtures of the campaigns tests: API calls with a role's token, decisions through /v1/decide with the source's
write key, and a clean slate in Redis (the exposure queue and pending sets) for each test."""
import base64

import orjson
import pytest
import redis
from django.conf import settings

from campaigns import selectors
from tests.factories import ApiTokenFactory, UserFactory


@pytest.fixture(autouse=True)
def clean_campaign_state():
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = client.keys("campaigns:*")
    if keys:
        client.delete(*keys)
    selectors._local.snapshot = None
    selectors._stats_cache.clear()
    yield
    selectors._local.snapshot = None


@pytest.fixture
def call(client):
    keys = {}

    def request(method, path, body=None, *, role="Marketer"):
        if role not in keys:
            keys[role] = f"cdp_key_c{len(keys)}"
            ApiTokenFactory(user=UserFactory(groups=[role] if role else []), key=keys[role])
        kwargs = {"HTTP_AUTHORIZATION": f"Bearer {keys[role]}"}
        if body is not None:
            kwargs.update(data=orjson.dumps(body), content_type="application/json")
        return getattr(client, method)(path, **kwargs)
    return request


@pytest.fixture
def decide(client, source):
    """POST /v1/decide as a site would. A test's changes commit only when it ends, so the snapshot a decision
    reads is dropped first (the invalidation across processes has its own test)."""
    auth = "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()

    def post(body, *, write_key=None, headers=None):
        selectors._local.snapshot = None
        key_header = auth if write_key is None else "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        return client.post("/v1/decide", data=orjson.dumps(body), content_type="application/json",
                           HTTP_AUTHORIZATION=key_header, **(headers or {}))
    return post
