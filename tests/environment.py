"""`make test`: runs a command (the suite) against PostgreSQL and Redis.

Where they answer on their default ports (CI, a developer's machine), or DATABASE_URL and REDIS_URL are given,
those are used (tests use Redis database 15). On a bare machine it starts a private embedded PostgreSQL in a
temporary directory and a private redis-server on a free port (installing Debian's redis-server package when it
is missing and we are root), and stops both afterwards, on failure and Ctrl-C too.

    python -m tests.environment COMMAND...
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cdp import embedded


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _redis_server() -> str:
    found = shutil.which("redis-server")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("Installing Debian's redis-server package for the tests...", flush=True)
        quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}  # installed, not started
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=quiet,
                       stdout=subprocess.DEVNULL)
        found = shutil.which("redis-server")
    if found is None:
        sys.exit("No Redis answers on 127.0.0.1:6379 and redis-server is not installed (apt-get install "
                 "redis-server), or set REDIS_URL.")
    return found


def main(command: list[str]) -> int:
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "false"),
           "SECRET_KEY": os.environ.get("SECRET_KEY", "test-only")}
    cleanups = []
    try:
        if "DATABASE_URL" not in env:
            if _answers(5432):
                env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/cdp"
            else:
                data_dir = Path(tempfile.mkdtemp(prefix="cdp-test-postgres-"))
                cleanups.append(lambda: (embedded.stop(data_dir), shutil.rmtree(data_dir, ignore_errors=True)))
                env["DATABASE_URL"] = embedded.start(data_dir, fast_unsafe=True)
                print(f"No PostgreSQL on 127.0.0.1:5432: the tests use an embedded one in {data_dir}.", flush=True)
        if "REDIS_URL" not in env:
            if _answers(6379):
                env["REDIS_URL"] = "redis://127.0.0.1:6379/15"
            else:
                port = _free_port()
                server = subprocess.Popen([_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                           "--appendonly", "no"], stdout=subprocess.DEVNULL)
                cleanups.append(lambda: (server.terminate(), server.wait(10)))
                deadline = time.monotonic() + 10
                while not _answers(port) and time.monotonic() < deadline:
                    time.sleep(0.05)
                env["REDIS_URL"] = f"redis://127.0.0.1:{port}/15"
                print(f"No Redis on 127.0.0.1:6379: the tests use a private redis-server on port {port}.", flush=True)
        checked = subprocess.run([sys.executable, "manage.py", "check_services"], env=env)
        if checked.returncode:
            return checked.returncode
        return subprocess.run(command, env=env).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        for cleanup in reversed(cleanups):
            cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
