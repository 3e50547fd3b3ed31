"""Statements on a request's critical path, run as server-side prepared statements on Django's connection.

Django's cursors bind parameters on the client, so PostgreSQL plans every statement afresh; for the small, fixed
statements a decision runs, planning costs more than executing. A prepared statement is planned once per
connection (psycopg keeps the most recent ones per connection) and then executed with new parameters.
"""
from __future__ import annotations

import time

import psycopg
from django.db import connection


def fetch_prepared(sql: str, params: list) -> list[tuple]:
    """All rows of one statement (psycopg's %s placeholders), prepared on the connection. Logged like Django's
    own queries, so query counts (and the debug toolbar) see it."""
    connection.ensure_connection()
    started = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        # Without prepare_threshold in the database OPTIONS (DATABASE_PREPARED_STATEMENTS off), psycopg runs it
        # unprepared.
        cursor.execute(sql, params, prepare=True)
        rows = cursor.fetchall()
    if connection.queries_logged:
        connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})
    return rows
