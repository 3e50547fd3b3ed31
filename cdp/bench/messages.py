"""Deterministic, realistic Segment messages for a bench run; the client and the COPY limit build the same ones."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import orjson

BATCH_SIZE = 100
_PAGES = ["Home", "Pricing", "Docs", "Blog", "Checkout", "Account"]
_EVENTS = ["Product Viewed", "Product Added", "Order Completed", "Signed Up", "Search Performed"]
_PLANS = ["free", "pro", "enterprise"]
# A person's identify names their country, so the pipeline derives and stores their privacy regime.
_COUNTRIES = ["DE", "US", "France", "GB", "BR", "usa", "ES"]


def bench_messages(*, tag: str, events: int) -> list[dict]:
    """~events/10 people; about 20% identify (userId, anonymousId, email and country traits), 50% track, 30% page by
    anonymousId."""
    rng = random.Random(tag)
    people = max(1, events // 10)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    out = []
    for k in range(events):
        # The first message of every person is an identify, so it links its anonymousId to its userId.
        p = k if k < people else rng.randrange(people)
        slot = 0 if k < people else rng.randrange(10)
        anon = f"bench-{tag}-a{p}"
        ts = (start + timedelta(seconds=k)).isoformat().replace("+00:00", "Z")
        base = {"messageId": f"bench-{tag}-{k}", "anonymousId": anon, "timestamp": ts,
                "context": {"ip": f"10.{p % 250}.{k % 250}.1", "library": {"name": "analytics.js", "version": "4.1.0"},
                            "userAgent": "Mozilla/5.0 (bench)"}}
        if slot <= 1:
            msg = {**base, "type": "identify", "userId": f"bench-{tag}-u{p}",
                   "traits": {"email": f"u{p}.{tag}@bench.example", "name": f"Bench Person {p}",
                              "plan": _PLANS[p % 3], "country": _COUNTRIES[p % len(_COUNTRIES)]}}
        elif slot <= 6:
            msg = {**base, "type": "track", "event": rng.choice(_EVENTS),
                   "properties": {"sku": f"SKU-{rng.randrange(500)}", "price": rng.randrange(100, 10000) / 100,
                                  "currency": "EUR"}}
            if rng.random() < 0.5:
                msg["userId"] = f"bench-{tag}-u{p}"
        else:
            name = rng.choice(_PAGES)
            msg = {**base, "type": "page", "name": name,
                   "properties": {"path": "/" + name.lower(), "referrer": "https://www.example.com/"}}
        out.append(msg)
    return out


def bench_bodies(messages: list[dict]) -> list[bytes]:
    return [orjson.dumps({"batch": messages[i:i + BATCH_SIZE]}) for i in range(0, len(messages), BATCH_SIZE)]
