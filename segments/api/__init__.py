"""The segments REST API."""
