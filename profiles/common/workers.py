"""What the Celery side looks like from a web process: the broker, and for each queue the project declares
whether a worker consumes it and how many tasks wait in it. For /readyz and for screens that depend on a queue."""
from __future__ import annotations

from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from kombu.exceptions import OperationalError as BrokerError

# Asking the workers which queues they consume is a broadcast that waits for replies until this timeout, so
# the answer is cached briefly: screens ask on every page load.
INSPECT_TIMEOUT_S = 1.0
CACHE_KEY = "workers:queue_status"
CACHE_SECONDS = 10


@dataclass(frozen=True)
class QueueStatus:
    name: str
    workers: list[str]
    length: int | None
    # No broker (the embedded mode): tasks run in the process that queues them, so nothing waits.
    in_process: bool = False

    @property
    def consumed(self) -> bool:
        return self.in_process or bool(self.workers)


@dataclass(frozen=True)
class BrokerStatus:
    reachable: bool
    error: str
    queues: list[QueueStatus]


def _declared_queues() -> list[str]:
    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


def broker_status(*, fresh: bool = False) -> BrokerStatus:
    """The broker and every declared queue; cached for a few seconds unless `fresh`."""
    if not fresh and (cached := cache.get(CACHE_KEY)) is not None:
        return cached
    status = _inspect()
    cache.set(CACHE_KEY, status, CACHE_SECONDS)
    return status


def _inspect() -> BrokerStatus:
    names = _declared_queues()
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return BrokerStatus(True, "", [QueueStatus(name, [], 0, in_process=True) for name in names])
    try:
        with current_app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            # A declare (not passive) answers for an empty queue too, and creates nothing a worker would not.
            lengths = {name: connection.default_channel.queue_declare(queue=name).message_count for name in names}
        replies = current_app.control.inspect(timeout=INSPECT_TIMEOUT_S).active_queues() or {}
    except (BrokerError, OSError) as exc:
        return BrokerStatus(False, f"{type(exc).__name__}: {exc}", [QueueStatus(n, [], None) for n in names])
    consumers: dict[str, list[str]] = {name: [] for name in names}
    for worker, queues in sorted(replies.items()):
        for queue in queues:
            consumers.setdefault(queue["name"], []).append(worker)
    return BrokerStatus(True, "", [QueueStatus(name, consumers[name], lengths[name]) for name in names])


def queue_consumed(name: str) -> bool:
    """Whether a worker (or, in the embedded mode, this process) runs the tasks of this queue."""
    return any(q.consumed for q in broker_status().queues if q.name == name)
