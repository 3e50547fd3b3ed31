"""The database memory a training's queries may use: they aggregate and sort millions of events at once, one
training at a time on the learning queue, where the 4 MB default would spill every sort and hash to disk."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

LEARNING_WORK_MEM = "256MB"


@contextmanager
def learning_work_mem() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute(f"SET work_mem = '{LEARNING_WORK_MEM}'")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET work_mem")
