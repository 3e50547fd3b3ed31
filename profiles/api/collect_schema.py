"""The collection API (/v1/*) in the OpenAPI schema.

profiles/collect.py serves it with plain Django views, kept off DRF because it is the hottest path, so
drf-spectacular cannot see it; this postprocessing hook adds its operations. The shapes follow the Segment Spec
and what profiles.messages.validate_message checks: a message it refuses is still answered 200, listed under
`rejected` with one of REJECTION_CODES.
"""
from copy import deepcopy

from profiles.messages import MESSAGE_TYPES

TAG = "collection"
SCHEME = "writeKey"
REJECTION_CODES = ["invalid_message", "unknown_type", "message_too_large", "invalid_character", "missing_identity",
                   "missing_field", "invalid_field", "invalid_timestamp", "too_deep", "number_out_of_range"]
ERROR_CODES = {400: ["malformed_json", "invalid_body", "invalid_batch", "invalid_gzip"], 401: ["invalid_write_key"],
               413: ["payload_too_large"], 415: ["unsupported_encoding"]}
ERROR_DESCRIPTIONS = {
    400: "Malformed JSON (`malformed_json`), a body that is not an object (`invalid_body`), `batch` not a list "
         "(`invalid_batch`), a gzip body that does not inflate (`invalid_gzip`).",
    401: "No write key, or an unknown or inactive one (`invalid_write_key`).",
    413: "A message over 32 KB, or a batch over 500 KB (`payload_too_large`).",
    415: "A Content-Encoding other than gzip (`unsupported_encoding`).",
}

_ID = {"oneOf": [{"type": "string"}, {"type": "number"}], "description": "A string; numbers are taken as text."}
_OBJECT = {"type": "object", "additionalProperties": True}
_COMMON = {
    "type": {"type": "string", "enum": list(MESSAGE_TYPES),
             "description": "Optional on /v1/<type>, where the path's type wins; required in a batch."},
    "userId": _ID,
    "anonymousId": _ID,
    "messageId": {"type": "string", "description": "Unique per source: a replay is counted under `duplicates`. "
                                                   "Generated when absent."},
    "timestamp": {"type": "string", "format": "date-time",
                  "description": "When it happened; corrected for clock skew with sentAt; 1970-2199."},
    "sentAt": {"type": "string", "format": "date-time"},
    "context": {**_OBJECT, "description": "Segment's context; `context.traits` set traits, `context.externalIds` "
                                          "([{id, type}]) add identifiers."},
    "integrations": _OBJECT,
    "writeKey": {"type": "string", "description": "Instead of the HTTP Basic username."},
}
# What each type needs beyond an identity (userId or anonymousId), as validate_message checks.
_SPECIFIC = {
    "identify": ({"traits": _OBJECT}, []),
    "track": ({"event": {"type": "string", "pattern": r"\S"}, "properties": _OBJECT}, ["event"]),
    "page": ({"name": {"type": "string"}, "category": {"type": "string"}, "properties": _OBJECT}, []),
    "screen": ({"name": {"type": "string"}, "category": {"type": "string"}, "properties": _OBJECT}, []),
    "group": ({"groupId": _ID, "traits": _OBJECT}, ["groupId"]),
    "alias": ({"previousId": _ID}, ["previousId", "userId"]),
}


def _component(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _message_schema(kind: str, *, in_batch: bool) -> dict:
    properties, required = _SPECIFIC[kind]
    schema = {"type": "object", "properties": {**deepcopy(_COMMON), **properties}, "additionalProperties": True,
              "description": f"A Segment {kind} message."}
    if in_batch:
        schema["properties"]["type"] = {"type": "string", "enum": [kind]}
        required = ["type", *required]
    if "userId" not in required:
        schema["anyOf"] = [{"required": ["userId"]}, {"required": ["anonymousId"]}]
    if required:
        schema["required"] = required
    return schema


def _schemas() -> dict:
    schemas = {}
    for kind in MESSAGE_TYPES:
        schemas[f"Segment{kind.title()}"] = _message_schema(kind, in_batch=False)
        schemas[f"Segment{kind.title()}InBatch"] = _message_schema(kind, in_batch=True)
    schemas["SegmentBatch"] = {
        "type": "object", "required": ["batch"], "additionalProperties": True,
        "properties": {"batch": {"type": "array", "items": {"oneOf": [_component(f"Segment{k.title()}InBatch")
                                                                      for k in MESSAGE_TYPES]}},
                       "context": {**_OBJECT, "description": "Shared by every message; a message's own wins."},
                       "sentAt": {"type": "string", "format": "date-time"},
                       "writeKey": {"type": "string"}}}
    schemas["CollectRejection"] = {
        "type": "object", "required": ["index", "code", "message"],
        "properties": {"index": {"type": "integer", "minimum": 0}, "code": {"type": "string", "enum": REJECTION_CODES},
                       "message": {"type": "string"}, "field": {"type": "string"}}}
    schemas["CollectResult"] = {
        "type": "object", "required": ["success", "accepted", "duplicates", "rejected"],
        "properties": {"success": {"type": "boolean", "enum": [True]},
                       "accepted": {"type": "integer", "minimum": 0},
                       "duplicates": {"type": "integer", "minimum": 0},
                       "rejected": {"type": "array", "items": _component("CollectRejection")}}}
    return schemas


def _error(status: int) -> dict:
    body = {"type": "object", "required": ["success", "code", "message"],
            "properties": {"success": {"type": "boolean", "enum": [False]},
                           "code": {"type": "string", "enum": ERROR_CODES[status]}, "message": {"type": "string"}}}
    return {"description": ERROR_DESCRIPTIONS[status], "content": {"application/json": {"schema": body}}}


def _operation(kind: str) -> dict:
    body = "SegmentBatch" if kind == "batch" else f"Segment{kind.title()}"
    return {"post": {
        "operationId": f"collect_{kind}",
        "summary": f"Collect {'a batch of messages' if kind == 'batch' else f'a {kind} message'} (Segment Spec)",
        "description": "Authenticated by the source's write key as the HTTP Basic username (empty password), or "
                       "`writeKey` in the body. The body may be gzip (`Content-Encoding: gzip`). 200 once the "
                       "valid messages are committed; refused messages are listed in `rejected` by index.",
        "tags": [TAG],
        "security": [{SCHEME: []}],
        "parameters": [{"name": "Sec-GPC", "in": "header", "required": False, "schema": {"type": "string",
                        "enum": ["1"]}, "description": "Global Privacy Control: an opt-out of sale and sharing."}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _component(body)}}},
        "responses": {"200": {"description": "Understood; valid messages stored.",
                              "content": {"application/json": {"schema": _component("CollectResult")}}},
                      **{str(status): _error(status) for status in ERROR_CODES}},
    }}


def add_collection_api(result, generator, request, public):
    """drf-spectacular postprocessing hook: adds /v1/* with its bodies, responses and security scheme."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(_schemas())
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http", "scheme": "basic", "description": "The source's write key as the username, no password."}
    paths = {f"/v1/{kind}": _operation(kind) for kind in (*MESSAGE_TYPES, "batch")}
    result["paths"] = {**paths, **result.get("paths", {})}
    return result
