"""The Celery application; tasks live in each app's tasks.py."""
import os

from celery import Celery, signals

from cdp.startup import loaded_objects_freeze

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
app = Celery("cdp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# In the prefork parent just before it forks a child, so children share the frozen objects' memory instead of
# copying every page their first collection would touch; then in each process that runs tasks (a prefork child,
# the solo pool's process), for what it loaded since.
@signals.worker_before_create_process.connect
@signals.worker_process_init.connect
def _freeze_loaded_objects(**_) -> None:
    loaded_objects_freeze()
