"""Pieces every app needs, kept once at the bottom of the import graph: the API's error shape, pagination,
role permissions, advisory-lock keys and enqueue-after-commit. Segments and campaigns use these, never copies."""
