"""The decision API (POST /v1/decide) in the OpenAPI schema.

campaigns/decide.py serves it with a plain Django view (a page waits on it), which drf-spectacular cannot see; this
postprocessing hook adds it, with the write-key scheme the collection API's hook declares.
"""
REASONS = ["matched", "control", "global_holdout", "no_eligible_campaign", "no_consent", "frequency_cap"]
_ID = {"oneOf": [{"type": "string", "minLength": 1, "maxLength": 255}, {"type": "number"}],
       "description": "A string; numbers are taken as text."}
_ERROR = {"type": "object", "required": ["code", "message"],
          "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}
_DECISION = {
    "type": "object", "required": ["decision_id", "placement", "campaign", "variant", "content", "reason"],
    "properties": {
        "decision_id": {"type": "string", "format": "uuid", "nullable": True,
                        "description": "Set when content was shown and its exposure recorded."},
        "placement": {"type": "string"},
        "campaign": {"type": "object", "nullable": True, "properties": {"id": {"type": "integer"},
                                                                         "key": {"type": "string"}}},
        "variant": {"type": "string", "nullable": True, "description": 'A variant\'s key, "control" or "holdout".'},
        "content": {"type": "object", "additionalProperties": True},
        "reason": {"type": "string", "enum": REASONS}}}


def add_decide_api(result, generator, request, public):
    """drf-spectacular postprocessing hook: adds POST /v1/decide."""
    result.setdefault("components", {}).setdefault("schemas", {})["Decision"] = _DECISION
    body = {"type": "object", "required": ["placement"], "additionalProperties": True,
            "properties": {"userId": _ID, "anonymousId": _ID,
                           "placement": {"type": "string", "minLength": 1, "description": "A placement's key."},
                           "context": {"type": "object", "additionalProperties": True,
                                       "description": "What targeting's context conditions read (page.path, ...); "
                                                      "for a first visit also its consent (Segment's "
                                                      "context.consent)."},
                           "writeKey": {"type": "string"}},
            "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}]}

    def error(description):
        return {"description": description, "content": {"application/json": {"schema": _ERROR}}}

    operation = {"post": {
        "operationId": "decide", "tags": ["campaigns"], "security": [{"writeKey": []}],
        "summary": "What one person should get in one placement",
        "description": "Authenticated by a source's write key like the collection API. The placement's default "
                       "content when no campaign applies (the reason says why).",
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {"200": {"description": "The decision.",
                              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}}},
                      "400": error("Malformed JSON, no userId or anonymousId, a bad field (`field` names it)."),
                      "401": error("No write key, or an unknown or inactive one (`invalid_write_key`)."),
                      "404": error("No placement has that key (`unknown_placement`, with `reason` and the "
                                   "decision's other fields)."),
                      "413": error("A body over 64 KB.")}}}
    result["paths"] = {"/v1/decide": operation, **result.get("paths", {})}
    return result
