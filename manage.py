#!/usr/bin/env python
"""Django's command-line utility for the customer data platform."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as error:
        # A setting the operator must fix (no database, no SECRET_KEY): the sentence says how, a traceback would not.
        sys.exit(f"{sys.argv[1] if len(sys.argv) > 1 else 'manage.py'}: {error}")
