"""Pagination every list endpoint shares: bounded pages, so no request can ask for a whole table, and paging
parameters that are not small non-negative integers are refused with 400 rather than ignored or overflowing."""
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination, LimitOffsetPagination

MAX_PAGE_SIZE = 500
# PostgreSQL's OFFSET is a bigint; far below it, an offset this deep is a crawl, not a reader.
MAX_OFFSET = 10_000_000


def _paging_int(request, name: str, *, default: int | None, low: int, high: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < low:
        raise ValidationError({name: [f"{name} must be a whole number of at least {low}."]}, code="invalid")
    value = int(raw)
    if high is not None and value > high:
        raise ValidationError({name: [f"{name} must be at most {high}."]}, code="invalid")
    return value


def _bounded(parameters: list[dict], bounds: dict[str, dict]) -> list[dict]:
    """The schema's paging parameters with the bounds the checks above enforce (a larger limit is capped)."""
    for parameter in parameters:
        parameter["schema"] = {**parameter.get("schema", {}), **bounds.get(parameter["name"], {})}
    return parameters


class DefaultPagination(LimitOffsetPagination):
    """limit (at most 500, larger values are capped) and offset."""

    default_limit = 50
    max_limit = MAX_PAGE_SIZE

    def get_limit(self, request):
        limit = _paging_int(request, self.limit_query_param, default=self.default_limit, low=1)
        return min(limit, self.max_limit)

    def get_offset(self, request):
        return _paging_int(request, self.offset_query_param, default=0, low=0, high=MAX_OFFSET)

    def get_schema_operation_parameters(self, view):
        return _bounded(super().get_schema_operation_parameters(view), {
            self.limit_query_param: {"minimum": 1}, self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET}})


class NewestFirstPagination(CursorPagination):
    """Cursor pages over a growing table (events, the ledger): stable while new rows arrive. Subclasses name the
    ordering, which must match an index."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        size = _paging_int(request, self.page_size_query_param, default=self.page_size, low=1)
        return min(size, self.max_page_size)

    def get_schema_operation_parameters(self, view):
        return _bounded(super().get_schema_operation_parameters(view), {self.page_size_query_param: {"minimum": 1}})
