"""Project package: settings, URLs, the Celery app and the pipeline that wires the apps together."""
from .celery import app as celery_app

__all__ = ["celery_app"]
