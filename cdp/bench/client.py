"""The load client, run as its own process: posts pre-built /v1/batch bodies over keep-alive connections.

    python -m cdp.bench.client PORT WRITE_KEY TAG EVENTS CONNECTIONS

Prints one JSON line: {"elapsed": s, "requests": n, "accepted": n, "errors": n, "first_error": str|null}.
No Django here: it only needs the message generator, so it starts fast and costs the server nothing.
"""
from __future__ import annotations

import base64
import http.client
import sys
import threading
import time

import orjson

from cdp.bench.messages import bench_bodies, bench_messages


def run(port: int, write_key: str, tag: str, events: int, connections: int) -> dict:
    bodies = bench_bodies(bench_messages(tag=tag, events=events))
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    lock = threading.Lock()
    state = {"next": 0, "accepted": 0, "errors": 0, "first_error": None}

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        accepted = errors = 0
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= len(bodies):
                break
            body = bodies[i]
            headers = {"Content-Type": "application/json", "Authorization": auth,
                       "Content-Length": str(len(body)), "Connection": "keep-alive"}
            try:
                conn.request("POST", "/v1/batch", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 200:
                    accepted += orjson.loads(data).get("accepted", 0)
                else:
                    raise RuntimeError(f"HTTP {resp.status}: {data[:300]!r}")
                if resp.will_close:
                    conn.close()  # http.client reopens on the next request
            except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                errors += 1
                conn.close()
                with lock:
                    state["first_error"] = state["first_error"] or repr(exc)
        conn.close()
        with lock:
            state["accepted"] += accepted
            state["errors"] += errors

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "requests": len(bodies), "accepted": state["accepted"], "errors": state["errors"],
            "first_error": state["first_error"]}


if __name__ == "__main__":
    port, write_key, tag, events, connections = sys.argv[1:6]
    result = run(int(port), write_key, tag, int(events), int(connections))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
