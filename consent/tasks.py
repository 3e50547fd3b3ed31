"""Celery tasks of the consent app: they take request ids, never personal data, so the broker holds none."""
from celery import shared_task

from consent.services.background import BUILD_EXPORT, ERASE_SUBJECT, erasure_queue, export_queue
from consent.services.erasure import privacy_erase_step
from consent.services.exports import export_build, exports_purge
from consent.services.privacy import privacy_requests_unfinished
from consent.services.retention import retention_purge


@shared_task(name=ERASE_SUBJECT, queue="privacy", acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=120, time_limit=150, autoretry_for=(Exception,), retry_backoff=True,
             retry_backoff_max=600, max_retries=8)
def erase_subject(request_id: int, requeues: int = 0) -> bool:
    """One chunk of an erasure; re-queues itself until the request is complete (Sentry's deletions pattern)."""
    done = privacy_erase_step(request_id=request_id)
    if not done:
        erasure_queue(request_id=request_id, requeues=requeues + 1)
    return done


@shared_task(name=BUILD_EXPORT, queue="privacy", acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=600, time_limit=660, autoretry_for=(Exception,), retry_backoff=True, max_retries=8)
def build_export(request_id: int) -> None:
    export_build(request_id=request_id)


@shared_task(name="consent.resume_requests", queue="privacy", soft_time_limit=60, time_limit=90)
def resume_requests() -> int:
    """The safety net: re-queues erasures and exports that were started but have no task left (a broker
    outage, a task that ran out of retries or re-queues). Both are idempotent, so a duplicate does no harm."""
    erasing, exporting = privacy_requests_unfinished()
    for request_id in erasing:
        erasure_queue(request_id=request_id)
    for request_id in exporting:
        export_queue(request_id=request_id)
    return len(erasing) + len(exporting)


@shared_task(name="consent.purge_retention", queue="privacy", soft_time_limit=3000, time_limit=3300)
def purge_retention() -> dict:
    return retention_purge()


@shared_task(name="consent.purge_exports", queue="privacy", soft_time_limit=300, time_limit=330)
def purge_exports() -> int:
    return exports_purge()
