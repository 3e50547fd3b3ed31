"""Pagination every list endpoint shares: bounded pages, so no request can ask for a whole table."""
from rest_framework.pagination import CursorPagination, LimitOffsetPagination

MAX_PAGE_SIZE = 500


class DefaultPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = MAX_PAGE_SIZE


class NewestFirstPagination(CursorPagination):
    """Cursor pages over a growing table (events, the ledger): stable while new rows arrive. Subclasses name the
    ordering, which must match an index."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
