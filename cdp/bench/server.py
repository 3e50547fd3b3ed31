"""A gunicorn server for the HTTP benchmarks: a free port, readiness, stopping, and reading a client's result."""
from __future__ import annotations

import http.client
import socket
import subprocess
import time

import orjson


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, port: int, log_path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"gunicorn exited with {proc.returncode}:\n{open(log_path).read()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise ServerError(f"gunicorn was not ready after {timeout}s:\n{open(log_path).read()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def last_json(output: str) -> dict:
    lines = [line for line in output.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise ServerError(f"no JSON result in:\n{output[-3000:]}")
    return orjson.loads(lines[-1])
