"""The physical limit of one run: the same events written with one COPY into a bare table (no indexes)."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import orjson
from django.db import connection

from profiles.messages import AcceptedMessage, validate_message

_COLUMNS = ("id", "source_id", "message_id", "type", "event", "user_id", "anonymous_id", "timestamp",
            "received_at", "payload", "profile_id", "processed_at")


def _text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_rows(messages: list[dict], source_id: int) -> bytes:
    """COPY text-format rows for the messages, normalised exactly as the collection API stores them."""
    received_at = datetime.now(timezone.utc)
    stamp = received_at.isoformat()
    lines = []
    for k, message in enumerate(messages):
        m = validate_message(message, index=k, received_at=received_at, default_type=None, max_bytes=32 * 1024)
        assert isinstance(m, AcceptedMessage), m
        lines.append("\t".join([str(k + 1), str(source_id), _text(m.message_id), m.type, _text(m.event),
                                _text(m.user_id), _text(m.anonymous_id), m.timestamp.isoformat(), stamp,
                                _text(orjson.dumps(m.payload).decode()), "\\N", "\\N"]))
    return ("\n".join(lines) + "\n").encode()


def copy_limit(*, data: bytes, rows: int, table: str) -> float:
    """Events/s of one COPY (commit included) into a fresh logged table shaped like profiles_event, then dropped.

    A regular (WAL-logged) table, like profiles_event, so the limit counts the same durability cost.
    """
    connection.ensure_connection()
    raw = connection.connection  # the psycopg 3 connection, in autocommit under Django
    with raw.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(
            f"CREATE TABLE {table} (id bigint NOT NULL, source_id bigint NOT NULL, message_id varchar(200) NOT NULL, "
            "type varchar(16) NOT NULL, event varchar(200) NOT NULL, user_id varchar(512) NOT NULL, "
            "anonymous_id varchar(512) NOT NULL, timestamp timestamptz NOT NULL, received_at timestamptz NOT NULL, "
            "payload jsonb NOT NULL, profile_id bigint NULL, processed_at timestamptz NULL)"
        )
    try:
        chunk = 1 << 20
        started = time.perf_counter()
        with raw.transaction():
            with raw.cursor() as cur:
                with cur.copy(f"COPY {table} ({', '.join(_COLUMNS)}) FROM STDIN") as cp:
                    for i in range(0, len(data), chunk):
                        cp.write(data[i:i + chunk])
        elapsed = time.perf_counter() - started
        with raw.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            copied = cur.fetchone()[0]
        if copied != rows:
            raise RuntimeError(f"COPY wrote {copied} rows, expected {rows}")
    finally:
        with raw.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
    return rows / elapsed
