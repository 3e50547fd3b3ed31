"""Queueing Celery tasks after the transaction commits: a task queued inside a transaction that then rolls back
would work on rows that never existed, or run before the rows it needs are visible."""
from __future__ import annotations

from celery import current_app
from django.db import transaction


def enqueue_after_commit(task_name: str, *args) -> None:
    """Queues the task (by its registered name, within the app that defines it) once the current transaction
    commits; at once outside a transaction. In-process without a broker (the embedded mode runs tasks eagerly)."""
    transaction.on_commit(lambda: current_app.tasks[task_name].delay(*args))
