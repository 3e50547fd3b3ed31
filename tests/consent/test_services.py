"""The consent ledger and its current state, and the pipeline's consent steps through the collection API."""
from datetime import datetime, timedelta, timezone

import pytest
from django.db import DatabaseError, connection, transaction
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from consent import selectors
from consent.models import ConsentEntry, ConsentState, Purpose
from consent.services.ledger import ConsentChoice, UnknownPurpose, consent_record
from profiles.models import Identifier, Profile
from tests.consent.test_collected import IAB_PURPOSES_3_TO_9

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def profile(post_collect, drain):
    post_collect("identify", {"userId": "ann", "traits": {"email": "ann@example.com"}, "messageId": "seed"})
    drain()
    return Profile.objects.get()


def state(profile, purpose):
    row = ConsentState.objects.filter(profile=profile, purpose__key=purpose).first()
    return None if row is None else (row.granted, row.source)


def choice(profile, purpose, granted, minute, **extra):
    return ConsentChoice(profile_id=profile.pk, purpose=purpose, granted=granted, source="api",
                         recorded_at=at(minute), **extra)


def test_the_latest_choice_wins_whatever_order_choices_arrive_in(profile):
    consent_record(choices=[choice(profile, "marketing_email", True, 10)])
    consent_record(choices=[choice(profile, "marketing_email", False, 5)])  # older, arrives later

    assert state(profile, "marketing_email") == (True, "api")
    assert list(ConsentEntry.objects.order_by("id").values_list("granted", flat=True)) == [True, False]


def test_the_proof_keeps_a_keyed_hash_of_the_address_never_the_address(profile):
    [entry] = consent_record(choices=[choice(profile, "analytics", True, 1, ip="203.0.113.9", user_agent="UA",
                                             policy_version="privacy-2026-01")])
    assert len(entry.ip_hash) == 64 and "203.0.113.9" not in entry.ip_hash
    assert entry.regime == "gdpr" and entry.policy_version == "privacy-2026-01" and entry.user_agent == "UA"


def test_an_unknown_purpose_is_refused_and_nothing_is_written(profile):
    with pytest.raises(UnknownPurpose, match="newsletter"):
        consent_record(choices=[choice(profile, "analytics", True, 1), choice(profile, "newsletter", True, 1)])
    assert not ConsentEntry.objects.exists() and not ConsentState.objects.exists()


def test_the_database_refuses_to_rewrite_or_delete_the_ledger_but_lets_erasure_clear_personal_data(profile):
    [entry] = consent_record(choices=[choice(profile, "analytics", True, 1, ip="203.0.113.9", user_agent="UA")])
    for statement in ("UPDATE consent_consententry SET granted = false WHERE id = %s",
                      "UPDATE consent_consententry SET recorded_at = now() WHERE id = %s",
                      "DELETE FROM consent_consententry WHERE id = %s"):
        with pytest.raises(DatabaseError, match="never"), transaction.atomic(), \
                connection.cursor() as cursor:
            cursor.execute(statement, [entry.pk])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE consent_consententry SET profile_id = NULL, ip_hash = '', user_agent = '' "
                       "WHERE id = %s", [entry.pk])
    entry.refresh_from_db()
    assert entry.profile_id is None and entry.granted is True and entry.ip_hash == ""


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["analytics", "advertising", "sale_sharing"]), st.booleans(),
                                st.integers(0, 5)), min_size=1, max_size=20),
       batch=st.integers(1, 6))
def test_the_current_state_is_always_the_latest_entry_of_the_ledger(profile, steps, batch):
    """Reference: per purpose, the entry with the latest recorded_at, the later entry on a tie."""
    ConsentState.objects.filter(profile=profile).delete()
    ConsentEntry.objects.filter(profile=profile).update(profile=None)  # leave earlier examples' history behind
    choices = [choice(profile, purpose, granted, minute) for purpose, granted, minute in steps]
    for start in range(0, len(choices), batch):
        consent_record(choices=choices[start:start + batch])

    expected = {}
    for entry in ConsentEntry.objects.filter(profile=profile).select_related("purpose").order_by("id"):
        best = expected.get(entry.purpose.key)
        if best is None or (entry.recorded_at, entry.id) >= (best.recorded_at, best.id):
            expected[entry.purpose.key] = entry
    got = {s.purpose.key: s.entry_id for s in ConsentState.objects.filter(profile=profile).select_related("purpose")}
    assert got == {key: entry.id for key, entry in expected.items()}


# --- through the collection API and the pipeline ------------------------------------------------------


def test_segment_category_preferences_become_choices_at_the_message_time(post_collect, drain):
    post_collect("identify", {"userId": "bo", "messageId": "m1", "timestamp": "2026-03-01T10:00:00Z",
                              "context": {"ip": "198.51.100.7", "consent": {"categoryPreferences": {
                                  "Advertising": False, "Email": True, "Unmapped": True}}}})
    drain()
    bo = Profile.objects.get()
    assert state(bo, "advertising") == (False, "collection") and state(bo, "marketing_email") == (True, "collection")
    assert ConsentEntry.objects.count() == 2
    entry = ConsentEntry.objects.get(purpose__key="advertising")
    assert entry.recorded_at == at(600) and entry.message_id == "m1" and len(entry.ip_hash) == 64


def test_a_tcf_string_decides_the_purposes_mapped_to_its_purposes(post_collect, drain):
    # Purposes are data: a privacy officer maps personalization to TCF purposes 5 and 6.
    Purpose.objects.filter(key="personalization").update(tcf_purposes=[5, 6])
    post_collect("track", {"userId": "cy", "event": "Viewed", "messageId": "t1",
                           "context": {"consent": {"tcString": IAB_PURPOSES_3_TO_9}}})
    drain()
    cy = Profile.objects.get()
    assert state(cy, "personalization") == (True, "tcf")   # 5 and 6 consented
    assert state(cy, "advertising") == (False, "tcf")       # 1 and 2 are not
    assert state(cy, "marketing_email") is None             # no TCF purpose decides it
    entry = ConsentEntry.objects.get(purpose__key="personalization")
    assert entry.tc_string == IAB_PURPOSES_3_TO_9 and entry.policy_version == "TCF v2 policy 2, CMP 2"


def test_global_privacy_control_header_opts_out_of_sale_and_wins_over_the_same_message(post_collect, drain):
    post_collect("track", {"userId": "di", "event": "Viewed", "messageId": "g1",
                           "context": {"consent": {"categoryPreferences": {"Sale": True}}}},
                 headers={"HTTP_SEC_GPC": "1"})
    drain()
    di = Profile.objects.get()
    assert state(di, "sale_sharing") == (False, "gpc")
    assert di.events.get().payload["context"]["gpc"] is True
    assert selectors.sharing_allowed(profile_ids=[di.pk]) == set()


def test_a_merge_keeps_the_most_restrictive_choice_and_the_ledger_says_why(post_collect, drain):
    # Eve's profile is the older one, so it survives; her phone said no to email before the two were linked.
    post_collect("identify", {"userId": "eve", "messageId": "b", "timestamp": "2026-03-01T11:00:00Z",
                              "context": {"consent": {"categoryPreferences": {"Email": True, "Advertising": True}}}})
    drain()
    post_collect("track", {"anonymousId": "phone", "event": "Viewed", "messageId": "a",
                           "timestamp": "2026-03-01T10:00:00Z",
                           "context": {"consent": {"categoryPreferences": {"Email": False}}}})
    drain()
    phone, eve = Identifier.objects.get(value="phone").profile, Identifier.objects.get(value="eve").profile
    post_collect("identify", {"userId": "eve", "anonymousId": "phone", "messageId": "link",
                              "timestamp": "2026-03-01T12:00:00Z"})
    drain()

    survivor = Profile.objects.get(merged_into__isnull=True)
    assert survivor == eve
    assert state(survivor, "marketing_email") == (False, "merge")
    assert state(survivor, "advertising") == (True, "collection")  # a profile that never chose takes nothing away
    merge_entry = ConsentEntry.objects.get(source="merge")
    assert merge_entry.profile == eve and f"profiles {phone.pk} merged into {eve.pk}" in merge_entry.reason
    assert "denied" in merge_entry.reason
    assert {e.message_id for e in selectors.consent_history(profile=survivor)} == {"a", "b", ""}


def test_defaults_follow_the_regime_until_a_choice_is_made(post_collect, drain):
    post_collect("identify", {"userId": "eu", "traits": {"country": "DE"}, "messageId": "1"})
    post_collect("identify", {"userId": "us", "traits": {"country": "US", "state": "CA"}, "messageId": "2"})
    drain()
    eu, us = Identifier.objects.get(value="eu").profile, Identifier.objects.get(value="us").profile

    assert selectors.marketing_allowed(profile_ids=[eu.pk, us.pk], channel="email") == {us.pk}
    consent_record(choices=[choice(eu, "marketing_email", True, 1), choice(us, "marketing_email", False, 1)])
    assert selectors.marketing_allowed(profile_ids=[eu.pk, us.pk], channel="email") == {eu.pk}
    assert selectors.personalization_allowed(profile_ids=[eu.pk, us.pk]) == {us.pk}


def test_a_future_dated_message_cannot_outrank_a_later_opt_out(post_collect, drain):
    post_collect("identify", {"userId": "fu", "messageId": "f1", "timestamp": "2100-01-01T00:00:00Z",
                              "context": {"consent": {"categoryPreferences": {"Sale": True}}}})
    drain()
    fu = Profile.objects.get()
    assert ConsentEntry.objects.get().recorded_at.year < 2100  # capped when recorded
    consent_record(choices=[ConsentChoice(profile_id=fu.pk, purpose="sale_sharing", granted=False, source="api",
                                          recorded_at=datetime.now(timezone.utc))])
    assert selectors.sharing_allowed(profile_ids=[fu.pk]) == set()


def test_a_choice_for_a_profile_merged_away_meanwhile_lands_on_its_survivor(post_collect, drain):
    post_collect("identify", {"userId": "sv", "messageId": "1"})
    drain()
    post_collect("track", {"anonymousId": "gone", "event": "E", "messageId": "2"})
    drain()
    gone = Identifier.objects.get(value="gone").profile
    post_collect("identify", {"userId": "sv", "anonymousId": "gone", "messageId": "3"})
    drain()  # `gone` is a tombstone now; a caller that looked it up before still holds its id
    survivor = Profile.objects.get(merged_into__isnull=True)

    [entry] = consent_record(choices=[choice(gone, "sale_sharing", False, 1)])

    assert entry.profile_id == survivor.pk and state(survivor, "sale_sharing") == (False, "api")
