"""The privacy work that runs in Celery, and the one place that queues it: services queue the first step,
the tasks (consent/tasks.py, registered under these names) the next ones."""
from __future__ import annotations

import logging

from profiles.common.queueing import enqueue_after_commit

ERASE_SUBJECT = "consent.erase_subject"
BUILD_EXPORT = "consent.build_export"
# An erasure re-queues itself after each chunk; past this many in one run it stops, says so, and the periodic
# resume (consent.resume_requests) starts a new run. 1,000 chunks of 20,000 rows per table is far more than any
# one person has: reaching it means something keeps adding rows.
MAX_ERASE_REQUEUES = 1000
logger = logging.getLogger(__name__)


def erasure_queue(*, request_id: int, requeues: int = 0) -> None:
    """Queues the next step of a deletion after commit, unless this run has re-queued itself too often."""
    if requeues > MAX_ERASE_REQUEUES:
        logger.warning("erasure of request %s stopped after %s steps in one run; the periodic resume continues it",
                       request_id, MAX_ERASE_REQUEUES)
        return
    enqueue_after_commit(ERASE_SUBJECT, request_id, requeues)


def export_queue(*, request_id: int) -> None:
    enqueue_after_commit(BUILD_EXPORT, request_id)
