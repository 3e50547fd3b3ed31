"""Errors as JSON with a machine-readable code, a human message and, where there is one, the field."""
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    code = getattr(exc, "default_code", "error")
    if isinstance(detail, dict) and "detail" in detail:
        response.data = {"code": getattr(detail["detail"], "code", code), "message": str(detail["detail"])}
    elif isinstance(detail, dict):
        field, messages = next(iter(detail.items()))
        first = messages[0] if isinstance(messages, list) and messages else messages
        response.data = {"code": getattr(first, "code", "invalid"), "message": str(first), "field": field,
                         "errors": detail}
    else:
        response.data = {"code": code, "message": str(detail)}
    return response
