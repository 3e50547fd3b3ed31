"""Fixtures of the segments tests: a real HTTP receiver for webhooks, profiles made through the collection API, a
segment with a destination."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from segments.models import Destination, Segment

SECRET = "whsec-test-0123456789abcdef"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return orjson.loads(self.body)


class Receiver:
    """An HTTP server in a thread on a free port that records every POST and answers with the statuses queued by
    answer() (a status, or a status and headers), then 200. With hold(), each request waits for release()."""

    def __init__(self):
        self.received: list[Received] = []
        self._answers: deque[int | tuple[int, dict]] = deque()
        self._lock = threading.Lock()
        self._gate: threading.Event | None = None
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body))
                    answer = receiver._answers.popleft() if receiver._answers else 200
                    gate = receiver._gate
                receiver.arrived.set()
                if gate is not None:
                    gate.wait(30)
                code, headers = answer if isinstance(answer, tuple) else (answer, {})
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, *codes: int | tuple[int, dict]) -> None:
        with self._lock:
            self._answers.extend(codes)

    def hold(self) -> None:
        self._gate = threading.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
        self._gate = None

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def make_profiles(post_collect, drain):
    """Profiles from identify messages through the pipeline: ids in the order of the user ids given. US
    profiles, so sale/sharing is allowed by default (CCPA's opt-out)."""
    def make(*user_ids: str, traits: dict | None = None) -> list[int]:
        from profiles.models import Identifier

        post_collect("batch", {"batch": [
            {"type": "identify", "userId": uid, "messageId": f"id-{uid}",
             "traits": {"country": "US", "email": f"{uid}@example.com", **(traits or {})}} for uid in user_ids]})
        drain()
        held = dict(Identifier.objects.filter(type="user_id", value__in=user_ids).values_list("value", "profile_id"))
        return [held[uid] for uid in user_ids]
    return make


@pytest.fixture
def destination(receiver, db):
    return Destination.objects.create(name="crm", url=receiver.url, secret=SECRET)


@pytest.fixture
def segment(destination):
    segment = Segment.objects.create(key="vip", name="VIP")
    segment.destinations.add(destination)
    return segment
