"""The Segment-compatible collection API (/v1/*): authenticate the write key, accept, answer 200.

Plain Django views rather than DRF: this is the hottest path of the product and needs nothing of DRF.
"""
import base64
import gzip
import json
import re
import zlib

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from profiles.models import Source
from profiles.services.ingest import events_accept


def _error(status: int, code: str, message: str) -> HttpResponse:
    return HttpResponse(orjson.dumps({"success": False, "code": code, "message": message}), status=status,
                        content_type="application/json")


def write_key_from_header(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip()).decode()
        except (ValueError, UnicodeDecodeError):
            return ""
        return decoded.split(":", 1)[0]
    return ""


def _read_body(request: HttpRequest, limit: int) -> bytes | HttpResponse:
    encoding = request.headers.get("Content-Encoding", "").lower()
    raw = request.body
    if encoding == "gzip":
        try:
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = decompressor.decompress(raw, limit + 1)
        except (zlib.error, gzip.BadGzipFile):
            return _error(400, "invalid_gzip", "The body is not valid gzip.")
        return body
    if encoding not in ("", "identity"):
        return _error(415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; use gzip.")
    return raw


# orjson reads an integer beyond 64 bits as a float, silently losing digits; a run of 19 digits is where that can
# start (it may also be inside a string, which costs only the slower parse below).
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def _exact_integers(body: bytes, parsed):
    """The body parsed again with exact integers, so a message holding one beyond 64 bits is refused with a clear
    code (profiles.messages) instead of stored rounded. Rare, so the standard library's slower parser is fine."""
    try:
        return json.loads(body)
    except RecursionError:
        return parsed  # too deep for Python's parser: the messages concerned are refused as too deep anyway


def _with_batch_defaults(message, batch: dict):
    """Segment clients put sentAt (and may put context) on the batch; a message's own values win."""
    if not isinstance(message, dict):
        return message
    message = dict(message)
    if "sentAt" not in message and isinstance(batch.get("sentAt"), str):
        message["sentAt"] = batch["sentAt"]
    shared = batch.get("context")
    own = message.get("context")
    if isinstance(shared, dict) and (own is None or isinstance(own, dict)):
        message["context"] = {**shared, **(own or {})}
    return message


def _with_gpc(message):
    """Global Privacy Control travels as a request header (`Sec-GPC: 1`); it is kept with each message as
    `context.gpc`, where the pipeline's consent step reads it as an opt-out of sale and sharing."""
    if not isinstance(message, dict) or not (message.get("context") is None or isinstance(message["context"], dict)):
        return message
    return {**message, "context": {**(message.get("context") or {}), "gpc": True}}


@csrf_exempt
@require_POST
def collect(request: HttpRequest, kind: str) -> HttpResponse:
    limit = settings.COLLECT_MAX_BATCH_BYTES if kind == "batch" else settings.COLLECT_MAX_MESSAGE_BYTES
    if request.headers.get("Content-Length", "0").isdigit() and int(request.headers.get("Content-Length", "0")) > \
            settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        return _error(413, "payload_too_large", f"The request is larger than {limit} bytes.")
    body = _read_body(request, limit)
    if isinstance(body, HttpResponse):
        return body
    if len(body) > limit:
        what = "batch" if kind == "batch" else "message"
        return _error(413, "payload_too_large", f"The {what} is larger than {limit} bytes.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _error(400, "malformed_json", f"The body is not valid JSON: {exc}.")
    if _LONG_NUMBER.search(body):
        data = _exact_integers(body, data)
    if not isinstance(data, dict):
        return _error(400, "invalid_body", "The body must be a JSON object.")
    write_key = write_key_from_header(request) or data.get("writeKey") or ""
    if not isinstance(write_key, str) or "\x00" in write_key:
        write_key = ""  # no key has one; PostgreSQL could not even compare it
    source = Source.objects.filter(write_key=write_key, is_active=True).only("id").first() if write_key else None
    if source is None:
        return _error(401, "invalid_write_key", "A valid source write key is required as the HTTP Basic username.")
    if kind == "batch":
        messages = data.get("batch")
        if not isinstance(messages, list):
            return _error(400, "invalid_batch", "A batch body needs a list under \"batch\".")
        messages = [_with_batch_defaults(m, data) for m in messages]
    else:
        messages = [data]
    if request.headers.get("Sec-GPC", "").strip() == "1":
        messages = [_with_gpc(m) for m in messages]
    result = events_accept(source=source, messages=messages, default_type=None if kind == "batch" else kind)
    return HttpResponse(orjson.dumps(result.as_dict()), status=200, content_type="application/json")
