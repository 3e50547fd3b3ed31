"""Stops `make test` at once when PostgreSQL or Redis is not reachable, saying which and how to start it."""
import os
import sys
from urllib.parse import urlparse

import psycopg
import redis


def main() -> int:
    problems = []
    db_url = os.environ["DATABASE_URL"]
    parsed = urlparse(db_url)
    try:
        psycopg.connect(db_url.replace(parsed.path, "/postgres"), connect_timeout=3).close()
    except psycopg.Error as exc:
        problems.append(f"PostgreSQL is not reachable at {parsed.hostname}:{parsed.port or 5432} ({exc}).\n"
                        "  Start it with: pg_ctlcluster $(ls /etc/postgresql) main start   "
                        "(or set DATABASE_URL to a server you have).")
    redis_url = os.environ["REDIS_URL"]
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        problems.append(f"Redis is not reachable at {redis_url} ({exc}).\n"
                        "  Start it with: redis-server --daemonize yes   (or set REDIS_URL).")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
