"""The API's error shape: JSON with a machine-readable code, a human message and, where there is one, the field."""
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.views import exception_handler as drf_exception_handler


class ErrorSerializer(serializers.Serializer):
    """The error body every endpoint returns."""

    code = serializers.CharField()
    message = serializers.CharField()
    field = serializers.CharField(required=False)


class Conflict(APIException):
    """The resource's state does not allow the action; `code` says which state rule refused it."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"

    def __init__(self, *, code: str, message: str):
        super().__init__(detail=message, code=code)


def error_response(description: str) -> OpenApiResponse:
    """An error response for the OpenAPI schema, with the shared error body."""
    return OpenApiResponse(ErrorSerializer, description=description)


UNAUTHENTICATED = error_response("Missing, unknown or revoked bearer token.")
FORBIDDEN = error_response("The token's role may not do this.")
BAD_REQUEST = error_response("The body or a query parameter is invalid.")


def _first_error(detail, path: list[str]):
    """The first message in DRF's nested validation errors and the path to it ("identifiers.0.type"); a list's
    own errors ("This list may not be empty") stay on the list's path."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            found = _first_error(value, path if key == "non_field_errors" and path else [*path, str(key)])
            if found:
                return found
    elif isinstance(detail, list):
        for index, item in enumerate(detail):
            found = _first_error(item, [*path, str(index)]) if isinstance(item, (dict, list)) else (path, item)
            if found:
                return found
    elif detail:
        return path, detail
    return None


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    code = getattr(exc, "default_code", "error")
    if isinstance(detail, dict) and "detail" in detail:
        response.data = {"code": getattr(detail["detail"], "code", code), "message": str(detail["detail"])}
    elif isinstance(detail, dict) and (found := _first_error(detail, [])):
        path, first = found
        response.data = {"code": getattr(first, "code", "invalid"), "message": str(first), "field": ".".join(path),
                         "errors": detail}
    else:
        response.data = {"code": code, "message": str(detail)}
    return response
