"""A worker process takes what it loaded at start out of the garbage collector's sight (cdp/startup.py)."""
import gc

from celery import signals


def test_a_pool_process_freezes_what_it_loaded_when_it_starts():
    gc.unfreeze()
    try:
        signals.worker_process_init.send(sender=None)
        # Django, the apps and their libraries: far more than a bare interpreter's few thousand objects.
        assert gc.get_freeze_count() > 50_000
    finally:
        gc.unfreeze()
