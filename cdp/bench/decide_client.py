"""The decision load client, run as its own process: keep-alive connections to a running server.

    python -m cdp.bench.decide_client PORT WRITE_KEY TAG PROFILES MODE REQUESTS CONNECTIONS [RATE]

MODE `decide` posts /v1/decide as fast as the connections allow, `bare` gets /healthz (a view that returns fixed
JSON) the same way, `paced` posts /v1/decide at RATE requests per second (open loop: each latency counts from
when the request was due, so a slow answer that delays the next one is not hidden). Prints one JSON line:
{"elapsed", "requests", "errors", "first_error", "latencies_ms": [p50, p95, p99], "reasons": {...}}.
No Django here, so the client costs the server nothing but its requests.
"""
from __future__ import annotations

import base64
import http.client
import random
import sys
import threading
import time
from collections import Counter

import orjson

PLACEMENTS = ["home_banner", "product_sidebar", "cart_upsell", "email_weekly", "push_daily"]
PATHS = ["/", "/shoes/red", "/bags", "/sale/summer", "/cart"]


def _bodies(tag: str, profiles: int, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        who = ({"userId": f"{tag}-u{rng.randrange(profiles)}"} if rng.random() < 0.9
               else {"anonymousId": f"{tag}-visitor-{rng.randrange(10 * profiles)}"})
        out.append(orjson.dumps({**who, "placement": f"{tag}-{rng.choice(PLACEMENTS)}",
                                 "context": {"page": {"path": rng.choice(PATHS)}}}))
    return out


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(share * len(ordered))) - 1))]


def run(port: int, write_key: str, tag: str, profiles: int, mode: str, requests: int, connections: int,
        rate: float = 0.0) -> dict:
    bodies = _bodies(tag, profiles, requests, seed={"decide": 1, "bare": 2, "paced": 3}[mode])
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    lock = threading.Lock()
    state = {"next": 0, "errors": 0, "first_error": None}
    latencies: list[float] = []
    reasons: Counter = Counter()
    started = time.perf_counter()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, seen = [], Counter()
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= requests:
                break
            due = started + i / rate if mode == "paced" else time.perf_counter()
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            try:
                if mode == "bare":
                    conn.request("GET", "/healthz", headers={"Connection": "keep-alive"})
                else:
                    conn.request("POST", "/v1/decide", body=bodies[i], headers={
                        "Content-Type": "application/json", "Authorization": auth, "Connection": "keep-alive",
                        "Content-Length": str(len(bodies[i]))})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}: {data[:300]!r}")
                mine.append((time.perf_counter() - due) * 1000)
                if mode != "bare":
                    seen[orjson.loads(data)["reason"]] += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                conn.close()
                with lock:
                    state["errors"] += 1
                    state["first_error"] = state["first_error"] or repr(exc)
        conn.close()
        with lock:
            latencies.extend(mine)
            reasons.update(seen)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    shown = [round(_percentile(latencies, s), 2) for s in (0.5, 0.95, 0.99)] if latencies else None
    return {"elapsed": elapsed, "requests": requests, "errors": state["errors"], "first_error": state["first_error"],
            "latencies_ms": shown, "reasons": dict(reasons)}


if __name__ == "__main__":
    port, write_key, tag, profiles, mode, requests, connections = sys.argv[1:8]
    rate = float(sys.argv[8]) if len(sys.argv) > 8 else 0.0
    result = run(int(port), write_key, tag, int(profiles), mode, int(requests), int(connections), rate)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
