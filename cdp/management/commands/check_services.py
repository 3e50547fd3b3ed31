"""Stops `make test` at once when PostgreSQL or Redis is not reachable, saying which and how to start it.

A management command, but it never touches the ORM: it must answer before any test database exists."""
import os
from urllib.parse import urlparse

import psycopg
import redis
from django.core.management.base import BaseCommand, CommandError


def unreachable_services() -> list[str]:
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
    return problems


class Command(BaseCommand):
    help = "Checks that PostgreSQL (DATABASE_URL) and Redis (REDIS_URL) answer."
    requires_system_checks = []

    def handle(self, *args, **options):
        if "DATABASE_URL" not in os.environ or "REDIS_URL" not in os.environ:
            raise CommandError("Set DATABASE_URL and REDIS_URL (make test sets both).")
        problems = unreachable_services()
        if problems:
            raise CommandError("\n".join(problems))
        self.stdout.write("PostgreSQL and Redis are reachable.")
