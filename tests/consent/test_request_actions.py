"""Which actions apply to a request (one rule the screens and the services share), assignment, where the consent
choices of a request come from, and a rectification's values before, erased with the subject."""
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from consent.models import AuditEntry, ConsentEntry, PrivacyRequest, PrivacyRequestTransition
from consent.services import privacy
from consent.services.erasure import privacy_erase_step
from consent.services.transitions import RequestStateError
from profiles.models import Identifier
from tests.consent.test_privacy import subject_traffic
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ZOE = [{"type": "user_id", "value": "zoe-42"}]


class _Undo(Exception):
    pass


def _service(action, rid, officer):
    calls = {
        "verify": lambda: privacy.privacy_request_verify(request_id=rid),
        "execute": lambda: privacy.privacy_request_execute(request_id=rid),
        "extend": lambda: privacy.privacy_request_extend(request_id=rid, reason="a complex request"),
        "reject": lambda: privacy.privacy_request_reject(request_id=rid, reason="not the subject"),
        "assign": lambda: privacy.privacy_request_assign(request_id=rid, assignee_id=officer.pk),
    }
    return calls[action]


def _service_accepts(action, rid, officer) -> bool:
    """Whether the service carries the action out (then undone), or refuses it or does nothing (executing a
    request already under way is a harmless no-op)."""
    def snapshot():
        return PrivacyRequest.objects.filter(pk=rid).values().get(), PrivacyRequestTransition.objects.count()
    try:
        with transaction.atomic():
            before = snapshot()
            _service(action, rid, officer)()
            raise _Undo(snapshot() != before)
    except _Undo as changed:
        return changed.args[0]
    except RequestStateError:
        return False


def _create(kind, regime="gdpr", **kwargs):
    return privacy.privacy_request_create(kind=kind, regime=regime, identifiers=ZOE, **kwargs)


def _states():
    """Requests in the states a privacy officer meets, by name."""
    states = {}
    states["opt-out, received"] = _create("opt_out_sale", "ccpa")
    states["access, received"] = _create("access")
    verified = _create("access", "ccpa")
    privacy.privacy_request_verify(request_id=verified.pk)
    states["access, verified"] = verified
    extended = _create("deletion")
    privacy.privacy_request_verify(request_id=extended.pk)
    privacy.privacy_request_extend(request_id=extended.pk, reason="many systems")
    states["deletion, verified and extended"] = extended
    late = _create("restriction")
    PrivacyRequest.objects.filter(pk=late.pk).update(due_on=privacy.privacy_today() - timedelta(days=1))
    states["restriction, past due"] = late
    running = privacy.privacy_request_create(kind="deletion", regime="gdpr", identifiers=[
        {"type": "user_id", "value": "max-7"}])
    erased = privacy.privacy_request_create(kind="access", regime="gdpr", identifiers=[
        {"type": "email", "value": "max@example.org"}])
    privacy.privacy_request_verify(request_id=running.pk)
    privacy.privacy_request_execute(request_id=running.pk)
    states["deletion, being erased"] = running
    states["access, its subject erased by another"] = erased
    done = _create("opt_out_sale", "ccpa")
    privacy.privacy_request_execute(request_id=done.pk)
    states["opt-out, completed"] = done
    rejected = _create("access")
    privacy.privacy_request_reject(request_id=rejected.pk, reason="duplicate")
    states["access, rejected"] = rejected
    return states


EXPECTED = {
    # No identity verification and no extension for an opt-out (11 CCR 7026); nothing before verification.
    "opt-out, received": ["execute", "reject", "assign"],
    "access, received": ["verify", "extend", "reject", "assign"],
    "access, verified": ["execute", "extend", "reject", "assign"],
    "deletion, verified and extended": ["execute", "reject", "assign"],
    "restriction, past due": ["verify", "reject", "assign"],
    "deletion, being erased": ["assign"],
    "access, its subject erased by another": ["reject", "assign"],
    "opt-out, completed": [],
    "access, rejected": [],
}


def test_the_actions_offered_are_exactly_those_the_services_accept(post_collect, drain):
    subject_traffic(post_collect, drain)
    officer = UserFactory(username="olga", groups=["Privacy officer"])
    states = _states()

    offered = {name: privacy.privacy_request_actions(request=PrivacyRequest.objects.get(pk=r.pk))
               for name, r in states.items()}
    accepted = {name: [a for a in privacy.ACTIONS if _service_accepts(a, r.pk, officer)] for name, r in states.items()}

    assert offered == EXPECTED
    assert accepted == EXPECTED


def test_a_refused_action_says_why_with_a_code_and_changes_nothing():
    opt_out = _create("opt_out_sale", "ccpa")
    access = _create("access")
    before = (list(PrivacyRequest.objects.order_by("id").values()), PrivacyRequestTransition.objects.count(),
              AuditEntry.objects.count())

    refusals = {}
    for rid, action, call in [
        (opt_out.pk, "verify", lambda: privacy.privacy_request_verify(request_id=opt_out.pk)),
        (opt_out.pk, "extend", lambda: privacy.privacy_request_extend(request_id=opt_out.pk, reason="r")),
        (access.pk, "execute", lambda: privacy.privacy_request_execute(request_id=access.pk)),
        (access.pk, "extend-without-reason", lambda: privacy.privacy_request_extend(request_id=access.pk,
                                                                                       reason="  ")),
    ]:
        with pytest.raises(RequestStateError) as error:
            call()
        refusals[action] = error.value.code

    assert refusals == {"verify": "verification_not_required", "extend": "not_extendable",
                        "execute": "not_verified", "extend-without-reason": "reason_required"}
    assert (list(PrivacyRequest.objects.order_by("id").values()), PrivacyRequestTransition.objects.count(),
            AuditEntry.objects.count()) == before


def test_assignment_is_a_transition_with_its_actor_audited_by_id():
    olga = UserFactory(username="olga", groups=["Privacy officer"])
    pia = UserFactory(username="pia", groups=["Privacy officer"])
    marketer = UserFactory(username="mark", groups=["Marketer"])
    inactive = UserFactory(username="gone", groups=["Privacy officer"], is_active=False)
    request = _create("access", actor=olga)
    assert request.assignee == olga  # whoever files a request has it first

    privacy.privacy_request_assign(request_id=request.pk, assignee_id=pia.pk, actor=olga)
    privacy.privacy_request_assign(request_id=request.pk, assignee_id=pia.pk, actor=olga)  # the same: nothing

    request.refresh_from_db()
    assert request.assignee == pia and request.status == "received"
    assign = request.transitions.get(action="assign")
    assert (assign.actor, assign.note, assign.from_status, assign.to_status) == (olga, "pia", "received", "received")
    entry = AuditEntry.objects.get(action="privacy_request.assign")
    assert (entry.actor, entry.target_id, entry.details) == ("olga", request.pk, {
        "kind": "access", "from": "received", "to": "received", "assignee": pia.pk, "previous": olga.pk})

    for who in (marketer, inactive):
        with pytest.raises(RequestStateError) as refused:
            privacy.privacy_request_assign(request_id=request.pk, assignee_id=who.pk, actor=olga)
        assert refused.value.code == "invalid_assignee"
    privacy.privacy_request_assign(request_id=request.pk, assignee_id=None, actor=olga)
    request.refresh_from_db()
    assert request.assignee is None and request.transitions.filter(action="assign").count() == 2

    privacy.privacy_request_reject(request_id=request.pk, reason="duplicate", actor=olga)
    with pytest.raises(RequestStateError) as closed:
        privacy.privacy_request_assign(request_id=request.pk, assignee_id=olga.pk, actor=olga)
    assert closed.value.code == "invalid_status"
    assert PrivacyRequest.objects.get(pk=request.pk).assignee is None


def test_consent_choices_of_a_request_carry_the_source_they_came_from(post_collect, drain):
    subject_traffic(post_collect, drain)
    zoe = Identifier.objects.get(value="zoe-42").profile
    from_screen = _create("opt_out_sale", "ccpa")
    from_api = _create("opt_out_sale", "ccpa")
    restriction = _create("restriction")
    privacy.privacy_request_verify(request_id=restriction.pk)

    privacy.privacy_request_execute(request_id=from_screen.pk, source="privacy_request")
    privacy.privacy_request_execute(request_id=from_api.pk)
    privacy.privacy_request_execute(request_id=restriction.pk, source="privacy_request")

    sources = {(e.reason.split()[-1], e.source) for e in ConsentEntry.objects.filter(profile=zoe, reason__contains=
                                                                                       "privacy request")}
    assert sources == {(str(from_screen.pk), "privacy_request"), (str(from_api.pk), "api"),
                       (str(restriction.pk), "privacy_request")}


def test_a_rectification_keeps_the_values_before_and_an_erasure_clears_them_with_the_changes(post_collect, drain):
    subject_traffic(post_collect, drain)
    rectification = _create("rectification", changes={"name": "Zoe Q. Field", "nickname": "Zed"},
                            notes="called on Monday")
    privacy.privacy_request_verify(request_id=rectification.pk, note="passport seen")
    privacy.privacy_request_execute(request_id=rectification.pk)
    drain()
    rectification.refresh_from_db()
    zoe = Identifier.objects.get(value="zoe-42").profile
    assert rectification.status == "completed"
    assert rectification.progress["before"] == {str(zoe.pk): {"name": "Zoe Quartzfield", "nickname": None}}

    deletion = _create("deletion")
    privacy.privacy_request_verify(request_id=deletion.pk)
    privacy.privacy_request_execute(request_id=deletion.pk)
    while not privacy_erase_step(request_id=deletion.pk):
        pass

    rectification.refresh_from_db()
    assert rectification.changes == {"name": None, "nickname": None}
    assert rectification.progress["before"] == {str(zoe.pk): {"name": None, "nickname": None}}
    assert rectification.identifiers == [{"type": "user_id"}] and rectification.notes == ""
    assert "Quartzfield" not in str(PrivacyRequest.objects.values_list("progress", "changes", "receipt"))
    assert set(rectification.transitions.values_list("note", flat=True)) == {""}


def test_request_identifiers_are_stored_as_the_identity_graph_stores_them():
    request = privacy.privacy_request_create(kind="access", regime="gdpr", identifiers=[
        {"type": "email", "value": "  Zoe.Quartz@Example.ORG "}, {"type": "phone", "value": "+1 (415) 555-0199"},
        {"type": "phone", "value": "not a number"}, {"type": "user_id", "value": " Zoe-42 "}])
    assert request.identifiers == [{"type": "email", "value": "zoe.quartz@example.org"},
                                   {"type": "phone", "value": "+14155550199"},
                                   {"type": "phone", "value": "not a number"}, {"type": "user_id", "value": "Zoe-42"}]


def test_due_dates_are_counted_in_the_platforms_time_zone_whoever_looks(settings):
    import zoneinfo

    request = _create("access")
    PrivacyRequest.objects.filter(pk=request.pk).update(due_on=timezone.localdate(
        timezone=zoneinfo.ZoneInfo(settings.TIME_ZONE)))
    request.refresh_from_db()
    # A viewer far ahead (already tomorrow there) does not make a request due today too late to extend.
    with timezone.override(zoneinfo.ZoneInfo("Pacific/Kiritimati")):
        assert privacy.privacy_today() == timezone.localdate(timezone=zoneinfo.ZoneInfo(settings.TIME_ZONE))
        assert "extend" in privacy.privacy_request_actions(request=request)
