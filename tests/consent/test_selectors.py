"""The consent filter in SQL (ORM and raw forms) against a reference of the rule, over ledgers built for real."""
import itertools
from datetime import datetime, timedelta, timezone

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from consent import selectors
from consent.models import ConsentEntry, Purpose
from consent.regimes import regime_for
from consent.services.ledger import ConsentChoice, consent_record
from profiles.models import Identifier, Profile
from tests.consent.test_collected import IAB_PURPOSES_1_2, IAB_PURPOSES_2_10, IAB_PURPOSES_3_TO_9

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
CHECKED = ["marketing_email", "sale_sharing", "analytics", "advertising"]
SPELLINGS = ["DE", " de ", "Germany", "united kingdom", "UK", "fr", "US", "usa", "United States of America", " us",
             "BR", "Atlantis", "", 7, None]
_examples = itertools.count()


def reference(profile_ids: set[int], purpose: str) -> set[int]:
    """The rule as it read before regimes were stored: a profile's latest choice in the ledger (the latest
    recorded_at, the later entry on a tie), else the default of the regime its traits name, the setting's when
    they name none."""
    row = Purpose.objects.get(key=purpose)
    latest: dict[int, ConsentEntry] = {}
    for entry in ConsentEntry.objects.filter(profile_id__in=profile_ids, purpose=row):
        best = latest.get(entry.profile_id)
        if best is None or (entry.recorded_at, entry.id) > (best.recorded_at, best.id):
            latest[entry.profile_id] = entry
    allowed = set()
    for profile in Profile.objects.filter(id__in=profile_ids):
        if profile.pk in latest:
            granted = latest[profile.pk].granted
        else:
            regime = regime_for(profile.traits, default=settings.CONSENT_DEFAULT_REGIME)
            granted = row.gdpr_default if regime == "gdpr" else row.ccpa_default
        if granted:
            allowed.add(profile.pk)
    return allowed


def through_orm(profile_ids: set[int], purpose: str) -> set[int]:
    return set(Profile.objects.filter(id__in=profile_ids).filter(selectors.consent_allowed_q(purpose=purpose))
               .values_list("id", flat=True))


def through_sql(profile_ids: set[int], purpose: str) -> set[int]:
    condition, params = selectors.consent_allowed_sql(purpose=purpose, profile_alias="pr")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pr.id FROM profiles_profile pr WHERE pr.id = ANY(%s) AND {condition}",
                       [sorted(profile_ids), *params])
        return {pid for (pid,) in cursor.fetchall()}


def through_identifiers(profile_ids: set[int], purpose: str) -> set[int]:
    """The ORM form on another model: identifiers whose profile allows the purpose."""
    return set(Identifier.objects.filter(profile_id__in=profile_ids)
               .filter(selectors.consent_allowed_q(purpose=purpose, via="profile"))
               .values_list("profile_id", flat=True))


countries = st.one_of(
    st.builds(lambda c: {"country": c}, st.sampled_from(SPELLINGS)),
    st.builds(lambda c: {"address": {"country": c, "city": "Springfield"}}, st.sampled_from(SPELLINGS)),
    st.builds(lambda c, a: {"country": c, "address": {"country": a}}, st.sampled_from(SPELLINGS),
              st.sampled_from(SPELLINGS)),
    st.just({"plan": "pro"}),
)
signals = st.one_of(
    st.builds(lambda e, s, a: {"consent": {"categoryPreferences": {"Email": e, "Sale": s, "Analytics": a}}},
              st.booleans(), st.booleans(), st.booleans()),
    st.builds(lambda tc: {"consent": {"tcString": tc}}, st.sampled_from([IAB_PURPOSES_1_2, IAB_PURPOSES_2_10,
                                                                         IAB_PURPOSES_3_TO_9])),
    st.just("gpc"),
)
minutes = st.integers(0, 120)
people = st.integers(0, 3)
operations = st.lists(st.one_of(
    st.tuples(st.just("traits"), people, countries, minutes, st.booleans()),
    st.tuples(st.just("choice"), people, st.sampled_from(CHECKED), st.booleans(), minutes),
    st.tuples(st.just("signal"), people, signals, minutes),
    st.tuples(st.just("merge"), people, people, minutes, countries),
    st.tuples(st.just("drain")),
), max_size=12)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(countries, min_size=1, max_size=4), ops=operations,
       defaults=st.tuples(st.booleans(), st.booleans()))
def test_the_filter_in_both_forms_gives_the_answers_of_the_rule(post_collect, drain, first, ops, defaults):
    """Random people with countries in every spelling (or none), choices recorded at random times, Segment
    categories, TCF strings and GPC through the collection API, merges; under both default regimes, and with
    any defaults for one purpose."""
    tag = f"x{next(_examples)}"
    Purpose.objects.filter(key="marketing_email").update(gdpr_default=defaults[0], ccpa_default=defaults[1])
    anon = [f"{tag}-a{i}" for i in range(len(first))]
    sent = itertools.count()

    def at(minute):
        return (T0 + timedelta(minutes=minute)).isoformat()

    def post(kind, body, **extra):
        assert post_collect(kind, {**body, "messageId": f"{tag}-{next(sent)}"}, **extra).json()["accepted"] == 1

    for i, traits in enumerate(first):
        post("identify", {"anonymousId": anon[i], "timestamp": at(0),
                          "traits": {**traits, "email": f"p{i}@{tag}.example"}})
    drain()
    original = {i: Identifier.objects.get(type="anonymous_id", value=anon[i]).profile_id for i in range(len(anon))}

    for op in ops:
        kind, who = op[0], (op[1] % len(anon) if len(op) > 1 else 0)
        if kind == "traits":
            _, _, traits, minute, in_context = op
            body = ({"type": "track", "event": "Viewed", "context": {"traits": traits}} if in_context
                    else {"type": "identify", "traits": traits})
            post(body.pop("type"), {**body, "anonymousId": anon[who], "timestamp": at(minute)})
        elif kind == "choice":
            _, _, purpose, granted, minute = op
            # The id the caller once looked up: after a merge the choice lands on the survivor.
            consent_record(choices=[ConsentChoice(profile_id=original[who], purpose=purpose, granted=granted,
                                                  source="api", recorded_at=T0 + timedelta(minutes=minute))])
        elif kind == "signal":
            _, _, signal, minute = op
            body = {"anonymousId": anon[who], "event": "Viewed", "timestamp": at(minute)}
            if signal == "gpc":
                post("track", body, headers={"HTTP_SEC_GPC": "1"})
            else:
                post("track", {**body, "context": signal})
        elif kind == "merge":
            _, _, other, minute, traits = op
            other %= len(anon)
            post("track", {"anonymousId": anon[other], "event": "Linked", "timestamp": at(minute),
                           "context": {"traits": {**traits, "email": f"p{who}@{tag}.example"}}})
        else:
            drain()
    drain()

    ids = set(original.values())
    ids |= set(Profile.objects.filter(id__in=ids).exclude(merged_into=None).values_list("merged_into", flat=True))
    live = set(Profile.objects.filter(id__in=ids, merged_into=None).values_list("id", flat=True))
    # Every writer of traits kept the stored regime in step with them; tombstones hold no traits, so none.
    for profile in Profile.objects.filter(id__in=ids):
        assert profile.regime == regime_for(profile.traits, default=""), (profile.pk, profile.traits)
    for default_regime in ("gdpr", "ccpa"):
        with override_settings(CONSENT_DEFAULT_REGIME=default_regime):
            for purpose in CHECKED:
                expected = reference(ids, purpose)
                assert selectors.consent_granted(profile_ids=sorted(ids), purpose=purpose) == expected
                assert through_orm(ids, purpose) == expected
                assert through_sql(ids, purpose) == expected
                assert through_identifiers(ids, purpose) == expected & live
    assert selectors.marketing_allowed(profile_ids=sorted(ids), channel="email") == reference(ids, "marketing_email")
    assert selectors.sharing_allowed(profile_ids=sorted(ids)) == reference(ids, "sale_sharing")


@pytest.fixture
def eu_and_us(post_collect, drain):
    post_collect("batch", {"batch": [
        {"type": "identify", "userId": "eu", "traits": {"country": "DE"}, "messageId": "1"},
        {"type": "identify", "userId": "us", "traits": {"address": {"country": "USA"}}, "messageId": "2"},
        {"type": "identify", "userId": "nowhere", "traits": {"name": "N"}, "messageId": "3"},
    ]})
    drain()
    return {i.value: i.profile_id for i in Identifier.objects.filter(type="user_id")}


def test_a_profile_whose_country_names_no_regime_follows_the_setting_without_a_rewrite(eu_and_us):
    ids = sorted(eu_and_us.values())
    with override_settings(CONSENT_DEFAULT_REGIME="gdpr"):
        assert selectors.marketing_allowed(profile_ids=ids, channel="email") == {eu_and_us["us"]}
    with override_settings(CONSENT_DEFAULT_REGIME="ccpa"):
        assert selectors.marketing_allowed(profile_ids=ids, channel="email") == {eu_and_us["us"], eu_and_us["nowhere"]}
    assert dict(Profile.objects.filter(id__in=ids).values_list("id", "regime")) == {
        eu_and_us["eu"]: "gdpr", eu_and_us["us"]: "ccpa", eu_and_us["nowhere"]: ""}


def test_an_unknown_purpose_fails_closed_in_every_form(eu_and_us):
    for read in (lambda: selectors.consent_allowed_q(purpose="newsletter"),
                 lambda: selectors.consent_allowed_sql(purpose="newsletter"),
                 lambda: selectors.consent_granted(profile_ids=list(eu_and_us.values()), purpose="newsletter"),
                 lambda: selectors.consent_granted(profile_ids=[], purpose="newsletter")):
        with pytest.raises(Purpose.DoesNotExist):
            read()


def test_the_sql_form_takes_only_a_plain_alias():
    with pytest.raises(ValueError, match="alias"):
        selectors.consent_allowed_sql(purpose="analytics", profile_alias="p; DROP TABLE x")


def test_the_sql_form_composes_with_other_conditions_and_parameters(eu_and_us):
    condition, params = selectors.consent_allowed_sql(purpose="marketing_email", profile_alias="p")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT p.id FROM profiles_profile p WHERE p.id = ANY(%s) AND ({condition} OR p.id = %s)",
                       [list(eu_and_us.values()), *params, eu_and_us["eu"]])
        assert {pid for (pid,) in cursor.fetchall()} == {eu_and_us["us"], eu_and_us["eu"]}


def test_consent_granted_reads_the_purpose_then_the_profiles(eu_and_us, django_assert_num_queries):
    with django_assert_num_queries(2):
        assert selectors.sharing_allowed(profile_ids=list(eu_and_us.values())) == {eu_and_us["us"]}


def test_the_filter_of_a_purpose_granted_everywhere_by_default_keeps_all_but_the_denials(eu_and_us):
    Purpose.objects.filter(key="analytics").update(gdpr_default=True, ccpa_default=True)
    consent_record(choices=[ConsentChoice(profile_id=eu_and_us["us"], purpose="analytics", granted=False,
                                          source="api", recorded_at=T0)])
    expected = {eu_and_us["eu"], eu_and_us["nowhere"]}
    assert through_orm(set(eu_and_us.values()), "analytics") == expected
    assert through_sql(set(eu_and_us.values()), "analytics") == expected
