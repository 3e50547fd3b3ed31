"""The embedded PostgreSQL of `make run`: started, found by manage.py in another process, stopped, reused."""
import os
import subprocess
import sys

import pytest

from cdp.embedded import BASE_DIR


def _run(*args, data_dir, check=True):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(EMBEDDED_POSTGRES_DIR=str(data_dir), SECRET_KEY="test-only", DEBUG="false")
    return subprocess.run([sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                          check=check, timeout=120)


SQL = ("from django.db import connection\n"
       "with connection.cursor() as c:\n"
       "    c.execute('CREATE TABLE IF NOT EXISTS kept (n int)'); c.execute('INSERT INTO kept VALUES (1)')\n"
       "    c.execute('SELECT count(*), current_setting(%s) FROM kept', ['server_version'])\n"
       "    print(*c.fetchone(), connection.settings_dict['HOST'])")


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX only")
def test_embedded_server_is_found_by_manage_py_stopped_and_reused(tmp_path):
    data_dir = tmp_path / "postgres"
    try:
        started = _run("-m", "cdp.embedded", "start", data_dir=data_dir)
        assert started.stdout.strip().startswith("postgres://postgres@")
        assert _run("-m", "cdp.embedded", "status", data_dir=data_dir).stdout.strip() == "running"

        first = _run("manage.py", "shell", "-c", SQL, data_dir=data_dir).stdout.splitlines()[-1].split()
        assert first[0] == "1" and first[1].startswith("18.") and first[2] == str(data_dir.resolve())

        assert _run("-m", "cdp.embedded", "stop", data_dir=data_dir).stdout.strip() == "stopped"
        stopped = _run("-m", "cdp.embedded", "status", data_dir=data_dir, check=False)
        assert (stopped.returncode, stopped.stdout.strip()) == (1, "not running")
        refused = _run("manage.py", "check", data_dir=data_dir, check=False)
        assert refused.returncode == 1
        assert refused.stderr.strip() == (f"check: The embedded PostgreSQL under {data_dir.resolve()} is not running: "
                                          "start it with `make run` (or `python -m cdp.embedded start`), or set "
                                          "DATABASE_URL.")

        _run("-m", "cdp.embedded", "start", data_dir=data_dir)
        kept = _run("manage.py", "shell", "-c", SQL, data_dir=data_dir).stdout.splitlines()[-1].split()
        assert kept[0] == "2"  # the data of the first start
    finally:
        _run("-m", "cdp.embedded", "stop", data_dir=data_dir, check=False)


def test_settings_refuse_a_database_that_is_not_postgresql():
    env = {**os.environ, "DATABASE_URL": "sqlite:////tmp/cdp.sqlite3", "SECRET_KEY": "test-only"}
    refused = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env, capture_output=True,
                             text=True, timeout=60)

    assert refused.returncode == 1
    assert "DATABASE_URL must name a PostgreSQL database" in refused.stderr
    assert "Traceback" not in refused.stderr
