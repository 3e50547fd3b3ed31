"""Errors of the API and the collection API as JSON, whatever raised them.

DRF views answer JSON already; but a URL that matches no route (a non-numeric id, /v1/x), a method a plain view
does not allow, a CSRF refusal or an unhandled exception get Django's HTML page. Under /api/ and /v1/ this turns
them into the product's error body, {"code", "message"}, with the same status.
"""
import orjson
from django.http import HttpResponse

API_PREFIXES = ("/api/", "/v1/")
CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
         500: "server_error"}
MESSAGES = {404: "No such endpoint or resource: {path}.", 405: "{method} is not allowed on {path}.",
            403: "Forbidden.", 500: "The server failed; the error is logged.", 400: "Bad request."}


class ApiErrorsAsJson:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (response.status_code < 400 or not request.path.startswith(API_PREFIXES)
                or response.get("Content-Type", "").startswith("application/json")):
            return response
        status = response.status_code
        message = MESSAGES.get(status, "The request failed.").format(path=request.path, method=request.method)
        if status == 405 and response.get("Allow"):
            message += f" Allowed: {response['Allow']}."
        body = HttpResponse(orjson.dumps({"code": CODES.get(status, "error"), "message": message}), status=status,
                            content_type="application/json")
        for header in ("Allow", "WWW-Authenticate"):
            if response.has_header(header):
                body[header] = response[header]
        return body
