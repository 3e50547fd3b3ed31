"""The Celery application; tasks live in each app's tasks.py."""
import os

from celery import Celery, signals

from cdp.startup import loaded_objects_freeze

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
app = Celery("cdp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_process_init.connect  # each child of the prefork pool
@signals.worker_ready.connect  # the solo pool's one process
def _freeze_loaded_objects(**_) -> None:
    loaded_objects_freeze()
