"""WSGI entry point (gunicorn cdp.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
application = get_wsgi_application()
