"""Every privacy form, submitted empty and with bad values by every role: never a 500, and a refusal changes
nothing. The forms: a new request, each action on a request (with and without reasons), assignment, the queue's
and the audit log's filters, the record-a-choice form of the profile page, the time zone, and the downloads."""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from consent.models import AuditEntry, ConsentEntry, ConsentState, PrivacyRequest, PrivacyRequestTransition
from consent.services import privacy
from profiles.models import Identifier
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ALLOWED = {200, 301, 302, 400, 403, 404, 405, 410}
REFUSED = {400, 403, 404, 405, 410}
HUGE = "x" * 100_000
BAD = ["", "a\x00b", HUGE, "erase-me", "-1", "99999999999999999999", "2026-13-45", "9999-12-31", "☃\u202e"]
# For a reason, a note or an assignee: none is valid for the action it is sent with.
BAD_ACTION = {"verify": {"note": ["\x00", HUGE]}, "extend": {"reason": ["", " ", "\x00", HUGE]},
              "reject": {"reason": ["", "\x00", HUGE]}, "assign": {"assignee": ["x", "\x00", "-1", "9" * 20]}}
WRONG_IDS = ["0", str(2**63), "9" * 30]
ROLES = ["admin", "marketer", "privacy officer", "anonymous"]


def state():
    return (list(PrivacyRequest.objects.order_by("id").values()), PrivacyRequestTransition.objects.count(),
            AuditEntry.objects.count(), ConsentEntry.objects.count(), ConsentState.objects.count())


@pytest.fixture
def world(post_collect, drain):
    """A profile, and requests in the states the forms meet: open, an opt-out, closed."""
    post_collect("identify", {"userId": "zoe-42", "traits": {"email": "zoe@example.org"}, "messageId": "z1"})
    drain()
    ids = [{"type": "user_id", "value": "zoe-42"}]
    access = privacy.privacy_request_create(kind="access", regime="gdpr", identifiers=ids)
    opt_out = privacy.privacy_request_create(kind="opt_out_sale", regime="ccpa", identifiers=ids)
    closed = privacy.privacy_request_create(kind="restriction", regime="gdpr", identifiers=ids)
    privacy.privacy_request_reject(request_id=closed.pk, reason="duplicate")
    return {"profile": Identifier.objects.get(value="zoe-42").profile_id,
            "requests": [str(access.pk), str(opt_out.pk), str(closed.pk)]}


def login(client, role):
    users = {"admin": dict(username="root", groups=["Admin"], is_superuser=True, is_staff=True),
             "marketer": dict(username="mark", groups=["Marketer"]),
             "privacy officer": dict(username="olga", groups=["Privacy officer"])}
    if role != "anonymous":
        client.force_login(UserFactory(**users[role]))
    client.raise_request_exception = False  # a 500 is reported as the case that caused it, not as a traceback
    return client


@pytest.fixture
def officer(client):
    return login(client, "privacy officer")


def rectification(**overrides):
    data = {"kind": "rectification", "regime": "gdpr", "notes": "", "identifiers-TOTAL_FORMS": "1",
            "identifiers-INITIAL_FORMS": "0", "identifiers-0-type": "email", "identifiers-0-value": "zoe@example.org",
            "changes-TOTAL_FORMS": "1", "changes-INITIAL_FORMS": "0", "changes-0-key": "name",
            "changes-0-value": "Zoe Q."}
    return {**data, **overrides}


def cases(world):
    """(method, path, data) of every form, empty and with each bad value in each of its fields."""
    out = [("post", "/privacy/new/", {}), ("get", "/privacy/new/", {})]
    for field in ("kind", "regime", "identifiers-0-type", "identifiers-0-value", "changes-0-key", "changes-0-value",
                  "identifiers-TOTAL_FORMS", "changes-TOTAL_FORMS", "notes"):
        out += [("post", "/privacy/new/", rectification(**{field: value})) for value in BAD]
    out.append(("post", "/privacy/new/", rectification(**{"identifiers-INITIAL_FORMS": "5"})))
    out.append(("post", "/privacy/new/", rectification(notes="n" * 600_000)))  # over the request size limit
    for rid in world["requests"] + WRONG_IDS:
        out += [("get", f"/privacy/{rid}/", {}), ("get", f"/privacy/{rid}/receipt.json", {}),
                ("get", f"/privacy/{rid}/receipt.txt", {})]
        out.append(("get", f"/privacy/{rid}/reject/", {}))
        for action in ("verify", "execute", "extend", "reject", "assign", "erase", "x" * 300):
            out.append(("post", f"/privacy/{rid}/{action}/", {}))
            for field, values in BAD_ACTION.get(action, {}).items():
                out += [("post", f"/privacy/{rid}/{action}/", {field: value}) for value in values]
    for field in ("state", "q", "kind", "regime", "assignee"):
        out += [("get", "/privacy/", {field: value}) for value in BAD]
    for field in ("request", "profile", "actor", "since", "until", "before"):
        out += [("get", "/privacy/audit/", {field: value}) for value in BAD]
    out += [("post", "/privacy/audit/verify/", {}), ("get", "/privacy/audit/verify/", {}),
            ("get", "/privacy/dashboard/", {}), ("get", "/privacy/", {})]
    for pid in WRONG_IDS:
        out.append(("post", f"/profiles/{pid}/consent/", {"purpose": "analytics", "granted": "yes"}))
    pid = world["profile"]
    out.append(("post", f"/profiles/{pid}/consent/", {}))
    for field in ("purpose", "granted", "policy_version", "reason"):
        base = {"purpose": "analytics", "granted": "maybe"}  # never valid: a refusal every time
        out += [("post", f"/profiles/{pid}/consent/", {**base, field: value}) for value in BAD]
    out += [("post", f"/profiles/{pid}/consent/", {"purpose": value, "granted": "yes"}) for value in BAD]
    for value in BAD:
        out += [("post", "/time-zone/", {"time_zone": value}), ("get", f"/privacy/exports/{value or 'x'}/", {})]
    out += [("post", "/time-zone/", {}), ("get", "/privacy/exports/%00/", {}), ("get", "/start/", {})]
    return out


@pytest.mark.parametrize("role", ROLES)
def test_every_privacy_form_refuses_bad_input_without_a_500_and_without_a_change(client, world, role):
    login(client, role)
    failures = []
    every = cases(world)
    if role in ("marketer", "anonymous"):
        # Refused before any field is read: each form once, with its first bad value, is enough.
        every = list({(method, path): (method, path, data) for method, path, data in reversed(every)}.values())
    for method, path, data in every:
        before = state()
        response = getattr(client, method)(path, data)
        status = response.status_code
        if status not in ALLOWED:
            failures.append((status, method, path, {k: v[:40] for k, v in data.items()}))
        elif status in REFUSED and state() != before:
            failures.append(("changed on refusal", status, method, path, {k: v[:40] for k, v in data.items()}))
        if role in ("marketer", "anonymous") and path.startswith("/privacy/") and status not in (302, 403, 404):
            failures.append(("not refused to this role", status, method, path))
    assert failures == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(
    st.sampled_from(["kind", "regime", "notes", "allow_recreation", "identifiers-TOTAL_FORMS",
                     "identifiers-INITIAL_FORMS", "identifiers-MAX_NUM_FORMS", "identifiers-0-type",
                     "identifiers-0-value", "identifiers-1-value", "changes-TOTAL_FORMS", "changes-0-key",
                     "changes-0-value", "changes-7-key"]),
    st.one_of(st.text(max_size=60), st.sampled_from(["rectification", "deletion", "gdpr", "ccpa", "email", "phone",
                                                     "1", "2", "3", "zoe@example.org", "name"]))))
def test_the_new_request_form_never_answers_500_whatever_is_typed(officer, data):
    before = state()
    client = officer
    response = client.post("/privacy/new/", data)
    assert response.status_code in (302, 400), data
    if response.status_code == 400:
        assert state() == before
