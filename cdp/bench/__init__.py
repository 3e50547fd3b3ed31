"""Helpers of `manage.py bench`: deterministic bench messages, the HTTP load client, and the COPY limit."""
