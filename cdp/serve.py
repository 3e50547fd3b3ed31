"""`make run`: start what the product needs on this machine, prepare the database, serve, and stop it all at the end.

Without DATABASE_URL it starts the embedded PostgreSQL under var/postgres (reused by the next run); without
REDIS_URL tasks run in-process, else a Celery worker with beat runs beside the web server. The first start writes
a local .env with a generated SECRET_KEY, so `manage.py` commands in another shell run with the same settings.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import environ

from cdp import embedded

BASE_DIR = embedded.BASE_DIR
BIN = Path(sys.executable).parent


def _ensure_env_file() -> None:
    env_file = BASE_DIR / ".env"
    if not env_file.exists() and "SECRET_KEY" not in os.environ:
        key = secrets.token_urlsafe(50)
        env_file.write_text(f"# Written by the first `make run`; see .env.example.\nSECRET_KEY={key}\n")
        print(f"Wrote {env_file} with a generated SECRET_KEY (kept for later runs).")


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), *args], check=True, cwd=BASE_DIR)


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def _start(*command: str) -> subprocess.Popen:
    # A session of its own, so stopping it stops its children too (runserver's reloader, the worker's pool).
    return subprocess.Popen(command, cwd=BASE_DIR, start_new_session=True)


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    _ensure_env_file()
    # What settings will read: a DATABASE_URL or REDIS_URL in .env counts as set.
    environ.Env.read_env(BASE_DIR / ".env")
    started_database = False
    worker = server = None
    try:
        if "DATABASE_URL" not in os.environ:
            if embedded.database_url() is None:
                embedded.start()
                started_database = True
            print(f"Embedded PostgreSQL 18 under {embedded.DATA_DIR} "
                  f"({'started; it stops when this ends' if started_database else 'already running'}).")
        if not os.environ.get("REDIS_URL"):
            print("No REDIS_URL: tasks run in-process, in the web server (set REDIS_URL for a Celery worker).")
        _manage("migrate", "--noinput")
        _manage("seed_demo", "--profiles", os.environ.get("DEMO_PROFILES", "300"), "--if-empty")
        _manage("create_demo_users")
        if os.environ.get("REDIS_URL"):
            worker = _start(str(BIN / "celery"), "-A", "cdp", "worker", "-B", "-l", "warning", "--concurrency", "2")
        port = os.environ.get("PORT", "8000")
        print(f"Serving on http://127.0.0.1:{port} (admin /admin/, API docs /api/docs/). Ctrl-C stops.")
        server = _start(sys.executable, str(BASE_DIR / "manage.py"), "runserver", f"127.0.0.1:{port}")
        server.wait()
    except KeyboardInterrupt:
        pass
    except subprocess.CalledProcessError as error:
        print(f"make run: {' '.join(error.cmd[1:3])} failed (exit {error.returncode}).", file=sys.stderr)
        return 1
    finally:
        _stop(server)
        _stop(worker)
        if started_database:
            embedded.stop()
            print("Embedded PostgreSQL stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
