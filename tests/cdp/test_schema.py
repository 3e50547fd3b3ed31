"""The OpenAPI schema is the API's contract: fuzzing it against the live app finds no server error, no status or
body the schema does not declare, and no request the schema calls valid refused as invalid (400).

Every operation of /api/schema/ is run, the collection API (/v1/*) included, with a fixed number of
derandomized examples, so a run is repeatable and takes seconds.
"""
import base64
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (positive_data_acceptance, response_schema_conformance,
                                               status_code_conformance)

from profiles.models import Source
from tests.factories import ApiTokenFactory, UserFactory

ADMIN_KEY = "cdp_schema_admin_key"
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, positive_data_acceptance]
# SCHEMA_FUZZ_EXAMPLES raises it for a longer hunt.
EXAMPLES_PER_OPERATION = int(os.environ.get("SCHEMA_FUZZ_EXAMPLES", "15"))
COLLECTION = {f"POST /v1/{kind}" for kind in ("identify", "track", "page", "screen", "group", "alias", "batch")}
# Executing a request carries out an erasure or an export whose work depends on what earlier examples created
# (ids come from sequences that other tests advance too); its contract is covered in tests/consent.
SKIPPED = {"privacy_requests_execute"}
# Which identifier types exist is data (the external id types identity rules name or profiles hold), so the schema
# cannot list them, and an unknown one is a 400 the schema documents: only that check is left out for lookup.
DATA_DECIDES_VALIDITY = {"profiles_lookup"}
# A segment's definition is a recursive rule language (segments.rules) that names traits, events, purposes and other
# segments: its schema is "any JSON", and the documented 400 invalid_definition (with the JSON path) is the data's.
DATA_DECIDES_VALIDITY |= {"segments_create", "segments_update", "segments_partial_update", "segments_preview"}
# A campaign's targeting is that language too, its variants, caps and goal JSON checked as a whole (weights adding up
# to 100, a goal with its window); the programme's channel caps likewise.
DATA_DECIDES_VALIDITY |= {"campaigns_create", "campaigns_update", "campaigns_partial_update",
                          "campaign_settings_update", "campaign_settings_partial_update"}
# A placement's key is unique: one already taken is a 400 that no schema can express.
DATA_DECIDES_VALIDITY |= {"placements_create", "placements_update", "placements_partial_update"}

# A clustering's features must be computed traits some profile holds as numbers (and k_min at most k_max); a model's
# key must not be one of the product's own computed traits: the data decides, with the documented 400.
DATA_DECIDES_VALIDITY |= {"clustering_create", "models_create"}

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def credentials(transactional_db):
    ApiTokenFactory(user=UserFactory(username="schema-admin", groups=["Admin"]), key=ADMIN_KEY)
    source = Source.objects.create(name="schema")
    basic = base64.b64encode(f"{source.write_key}:".encode()).decode()
    return {"rest": {"Authorization": f"Bearer {ADMIN_KEY}"}, "collect": {"Authorization": f"Basic {basic}"}}


def test_the_live_api_keeps_its_openapi_contract(live_server, credentials):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")
    failures, ran = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.definition.raw.get("operationId") in SKIPPED:
            continue
        headers = credentials["collect" if operation.path.startswith("/v1/") else "rest"]
        checks = [c for c in CHECKS if c is not positive_data_acceptance
                  or operation.definition.raw.get("operationId") not in DATA_DECIDES_VALIDITY]

        @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case):
            case.call_and_validate(headers=headers, checks=checks)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as error:  # every operation is run, then all failures reported
            failures.append(f"{operation.label}: {error}")
        ran.append(operation.label)
    assert failures == [], "\n\n".join(failures)
    assert COLLECTION <= set(ran)
    assert len(ran) == 77


@pytest.mark.django_db
def test_every_collection_error_is_declared_with_its_status_and_code(client, source, settings):
    """The refusals the fuzz does not reach (it sends only what the schema calls valid), each against the schema."""
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    basic = "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()
    refusals = [
        ("track", b"{", {"HTTP_AUTHORIZATION": basic}, 400, "malformed_json"),
        ("track", b"[]", {"HTTP_AUTHORIZATION": basic}, 400, "invalid_body"),
        ("batch", b'{"batch": {}}', {"HTTP_AUTHORIZATION": basic}, 400, "invalid_batch"),
        ("track", b"not gzip", {"HTTP_AUTHORIZATION": basic, "HTTP_CONTENT_ENCODING": "gzip"}, 400, "invalid_gzip"),
        ("track", b"{}", {}, 401, "invalid_write_key"),
        ("track", b'{"p": "' + b"x" * settings.COLLECT_MAX_MESSAGE_BYTES + b'"}', {"HTTP_AUTHORIZATION": basic}, 413,
         "payload_too_large"),
        ("track", b"{}", {"HTTP_AUTHORIZATION": basic, "HTTP_CONTENT_ENCODING": "br"}, 415, "unsupported_encoding"),
    ]
    for kind, body, headers, status, code in refusals:
        response = client.post(f"/v1/{kind}", data=body, content_type="application/json", **headers)
        assert (response.status_code, response.json()["code"]) == (status, code)
        declared = schema["paths"][f"/v1/{kind}"]["post"]["responses"][str(status)]
        assert code in declared["content"]["application/json"]["schema"]["properties"]["code"]["enum"]
    rejected = client.post("/v1/batch", data=b'{"batch": [{"type": "track", "userId": "u"}, 7]}',
                           content_type="application/json", HTTP_AUTHORIZATION=basic).json()["rejected"]
    codes = schema["components"]["schemas"]["CollectRejection"]["properties"]["code"]["enum"]
    assert [(r["index"], r["code"]) for r in rejected] == [(0, "missing_field"), (1, "invalid_message")]
    assert {r["code"] for r in rejected} <= set(codes)


def test_the_schema_lists_exactly_the_rejection_codes_messages_can_give():
    import inspect
    import re

    from profiles import messages
    from profiles.api.collect_schema import REJECTION_CODES

    given = set(re.findall(r'Rejection\(index, "([a-z_]+)"', inspect.getsource(messages)))
    assert given == set(REJECTION_CODES)
