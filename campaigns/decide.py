"""The decision API, POST /v1/decide: authenticated with a source's write key like the collection API, it answers
what one person should get in one placement.

A plain Django view, like the collection API: it sits on a page's critical path and needs nothing of DRF.
"""
import orjson
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from campaigns.services.decisions import WriteKeyRefused, decide
from profiles.collect import write_key_from_header

MAX_BODY = 64 * 1024
MAX_ID = 255


def _error(status: int, code: str, message: str, field: str = "") -> HttpResponse:
    body = {"code": code, "message": message, **({"field": field} if field else {})}
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


def _refused() -> HttpResponse:
    return _error(401, "invalid_write_key", "A valid source write key is required as the HTTP Basic username.")


def _identifier(data: dict, name: str) -> str | HttpResponse:
    value = data.get(name)
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # Segment's clients send numeric ids as numbers
    if not isinstance(value, str) or len(value) > MAX_ID or "\x00" in value:
        return _error(400, "invalid_field", f"{name} is a string of at most {MAX_ID} characters", name)
    return value


@csrf_exempt
@require_POST
def decide_view(request: HttpRequest) -> HttpResponse:
    if len(request.body) > MAX_BODY:
        return _error(413, "payload_too_large", f"The body is larger than {MAX_BODY} bytes.")
    try:
        data = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        return _error(400, "malformed_json", f"The body is not valid JSON: {exc}.")
    if not isinstance(data, dict):
        return _error(400, "invalid_body", "The body must be a JSON object.")
    write_key = write_key_from_header(request) or data.get("writeKey") or ""
    if not isinstance(write_key, str) or "\x00" in write_key or not write_key:
        return _refused()
    user_id, anonymous_id = _identifier(data, "userId"), _identifier(data, "anonymousId")
    for value in (user_id, anonymous_id):
        if isinstance(value, HttpResponse):
            return value
    if not user_id and not anonymous_id:
        return _error(400, "missing_identity", "A decision needs a userId or an anonymousId.", "userId")
    placement = data.get("placement")
    if not isinstance(placement, str) or not placement:
        return _error(400, "invalid_field", "placement is the key of a placement", "placement")
    context = data.get("context", {})
    if not isinstance(context, dict):
        return _error(400, "invalid_field", "context is a JSON object", "context")
    if request.headers.get("Sec-GPC", "").strip() == "1":
        context = {**context, "gpc": True}
    try:
        decision = decide(placement_key=placement, user_id=user_id, anonymous_id=anonymous_id, context=context,
                          write_key=write_key)
    except WriteKeyRefused:
        return _refused()
    if decision is None:
        return HttpResponse(orjson.dumps({
            "decision_id": None, "placement": placement, "campaign": None, "variant": None, "content": {},
            "reason": "unknown_placement", "code": "unknown_placement",
            "message": f'no placement has the key "{placement}"', "field": "placement"}),
            status=404, content_type="application/json")
    return HttpResponse(orjson.dumps(decision.as_json()), content_type="application/json")
