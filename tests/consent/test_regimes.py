"""The regime stored on profiles: kept in step with the country traits by every writer, filled by the migration."""
import importlib
import json

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings as hsettings, strategies as st

from consent.models import ConsentEntry
from consent.regimes import regime_for
from consent.services.ledger import ConsentChoice, consent_record
from profiles.models import Identifier, Profile
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
regime_migration = importlib.import_module("profiles.migrations.0011_profile_regime")


def regime_of(user_id: str) -> str:
    return Identifier.objects.get(type="user_id", value=user_id).profile.regime


def test_identify_traits_and_context_traits_set_the_regime_and_the_latest_message_wins(post_collect, drain):
    post_collect("identify", {"userId": "ann", "traits": {"country": "Germany"}, "messageId": "1",
                              "timestamp": "2026-03-01T10:00:00Z"})
    drain()
    assert regime_of("ann") == "gdpr"
    post_collect("track", {"userId": "ann", "event": "Moved", "messageId": "2", "timestamp": "2026-03-01T11:00:00Z",
                           "context": {"traits": {"country": "US"}}})
    drain()
    assert regime_of("ann") == "ccpa"
    # An older message arriving late changes neither the trait nor the regime.
    post_collect("identify", {"userId": "ann", "traits": {"country": "FR"}, "messageId": "3",
                              "timestamp": "2026-03-01T09:00:00Z"})
    drain()
    assert regime_of("ann") == "ccpa"
    post_collect("identify", {"userId": "ann", "traits": {"country": "Atlantis", "address": {"country": "DE"}},
                              "messageId": "4", "timestamp": "2026-03-01T12:00:00Z"})
    drain()
    assert regime_of("ann") == ""


def test_a_merge_carries_the_newer_country_to_the_survivor_and_empties_the_tombstone(post_collect, drain):
    post_collect("identify", {"userId": "bo", "traits": {"country": "US"}, "messageId": "1",
                              "timestamp": "2026-03-01T10:00:00Z"})
    drain()
    post_collect("identify", {"anonymousId": "phone", "traits": {"address": {"country": "IE"}}, "messageId": "2",
                              "timestamp": "2026-03-01T11:00:00Z"})
    drain()
    phone = Identifier.objects.get(value="phone").profile
    assert phone.regime == "gdpr"
    post_collect("track", {"userId": "bo", "anonymousId": "phone", "event": "Linked", "messageId": "3",
                           "timestamp": "2026-03-01T12:00:00Z"})
    drain()
    survivor = Profile.objects.get(merged_into=None)
    phone.refresh_from_db()
    # The survivor's `country` (US) still comes before the address it gained (IE).
    assert survivor.traits["address"] == {"country": "IE"} and survivor.regime == "ccpa"
    assert phone.merged_into == survivor and phone.regime == ""


def test_the_regime_is_written_with_the_traits_in_one_statement_per_batch(post_collect, drain):
    post_collect("identify", {"userId": "cy", "traits": {"country": "DE"}, "messageId": "1"})
    drain()
    post_collect("identify", {"userId": "cy", "traits": {"name": "Cy", "plan": "pro"}, "messageId": "2"})
    with CaptureQueriesContext(connection) as queries:
        drain()
    profile_writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE profiles_profile")]
    # No second write for the regime.
    assert len(profile_writes) == 1 and "regime = coalesce(v.regime, p.regime)" in profile_writes[0]
    assert regime_of("cy") == "gdpr"
    post_collect("identify", {"userId": "cy", "traits": {"country": "US"}, "messageId": "3"})
    drain()
    assert regime_of("cy") == "ccpa"


def test_a_batch_that_changes_no_trait_sends_no_traits_and_keeps_them(post_collect, drain):
    post_collect("identify", {"userId": "di", "traits": {"country": "FR", "plan": "pro"}, "messageId": "1"})
    drain()
    post_collect("track", {"userId": "di", "event": "Viewed", "messageId": "2"})
    with CaptureQueriesContext(connection) as queries:
        drain()
    [write] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE profiles_profile")]
    assert '"traits"' not in write and '"regime"' not in write and '"event_count":2' in write
    profile = Profile.objects.get(identifiers__value="di")
    assert profile.traits == {"country": "FR", "plan": "pro"} and profile.regime == "gdpr"


def test_the_ledger_records_the_stored_regime_or_the_setting(post_collect, drain):
    post_collect("batch", {"batch": [
        {"type": "identify", "userId": "us", "traits": {"country": "usa"}, "messageId": "1"},
        {"type": "identify", "userId": "nowhere", "messageId": "2"}]})
    drain()
    us, nowhere = (Identifier.objects.get(value=v).profile for v in ("us", "nowhere"))
    with override_settings(CONSENT_DEFAULT_REGIME="ccpa"):
        entries = consent_record(choices=[
            ConsentChoice(profile_id=p.pk, purpose="analytics", granted=True, source="api", recorded_at=p.created_at)
            for p in (us, nowhere)])
    assert [e.regime for e in entries] == ["ccpa", "ccpa"]
    entries = consent_record(choices=[
        ConsentChoice(profile_id=p.pk, purpose="analytics", granted=False, source="api", recorded_at=p.created_at)
        for p in (us, nowhere)])
    assert [e.regime for e in entries] == ["ccpa", "gdpr"]
    assert ConsentEntry.objects.count() == 4


def test_an_admin_edit_of_the_traits_moves_the_regime(client, post_collect, drain):
    post_collect("identify", {"userId": "di", "traits": {"name": "Di", "country": "US"}, "messageId": "1"})
    drain()
    profile = Profile.objects.get()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    form = {"traits": '{"name": "Di", "address": {"country": "Sweden"}}', "identifiers-TOTAL_FORMS": "0",
            "identifiers-INITIAL_FORMS": "0", "_save": "Save"}
    assert client.post(f"/admin/profiles/profile/{profile.pk}/change/", form).status_code == 302
    profile.refresh_from_db()
    assert profile.regime == "gdpr"
    # The regime is shown, and no form field can set it apart from the traits.
    page = client.get(f"/admin/profiles/profile/{profile.pk}/change/").content.decode()
    assert 'name="regime"' not in page and "gdpr" in page


def test_an_admin_edit_that_leaves_the_country_leaves_the_regime(client, post_collect, drain):
    post_collect("identify", {"userId": "ed", "traits": {"name": "Ed", "country": "FR"}, "messageId": "1"})
    drain()
    profile = Profile.objects.get()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    form = {"traits": '{"name": "Edward", "country": "FR"}', "identifiers-TOTAL_FORMS": "0",
            "identifiers-INITIAL_FORMS": "0", "_save": "Save"}
    assert client.post(f"/admin/profiles/profile/{profile.pk}/change/", form).status_code == 302
    profile.refresh_from_db()
    assert (profile.traits["name"], profile.regime) == ("Edward", "gdpr")


def test_no_index_of_profiles_covers_the_regime_so_its_updates_stay_hot():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'profiles_profile'::regclass")
        indexed = {name for (name,) in cursor.fetchall()}
    assert "regime" not in indexed and "last_seen" not in indexed


def test_the_migration_fills_the_regime_of_existing_live_profiles(post_collect, drain):
    post_collect("batch", {"batch": [
        {"type": "identify", "userId": "de", "traits": {"country": " de "}, "messageId": "1"},
        {"type": "identify", "userId": "us", "traits": {"address": {"country": "United States"}}, "messageId": "2"},
        {"type": "identify", "userId": "br", "traits": {"country": "BR"}, "messageId": "3"}]})
    drain()
    Profile.objects.update(regime="")  # as the column is right after it was added
    with connection.schema_editor() as editor:
        regime_migration.fill(None, editor)
    assert {v: regime_of(v) for v in ("de", "us", "br")} == {"de": "gdpr", "us": "ccpa", "br": ""}



def texts(max_size: int):
    # jsonb refuses NUL and a lone surrogate (which the collection API's JSON parser refuses before it).
    return st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=max_size)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2, 2) | st.floats(-1, 1) | texts(4),
                           lambda inner: st.lists(inner, max_size=2) | st.dictionaries(texts(3), inner, max_size=2),
                           max_leaves=4)
spellings = st.sampled_from(["DE", "de", "Germany", "UK", "united states of america", "USA", "us", "CH", "BR"])
# Country names and codes dressed in every kind of whitespace and case, and the few non-ASCII letters whose
# capitals are ASCII ("ıt" is Italy to Python), and anything else a client may send.
countries = st.one_of(
    st.builds(lambda pre, name, post, upper: pre + (name.upper() if upper else name.lower()) + post,
              st.text(" \t\n\xa0\u3000", max_size=2), spellings, st.text(" \u2003\r", max_size=2), st.booleans()),
    st.builds(lambda name: name.replace("i", "ı").replace("s", "ſ").replace("fi", "ﬁ").replace("st", "ﬅ"),
              st.sampled_from(["it", "is", "se", "es", "finland", "united states", "fi"])),
    texts(3),
    json_values,
)
trait_sets = st.fixed_dictionaries({}, optional={
    "country": countries, "address": st.one_of(st.fixed_dictionaries({}, optional={"country": countries}),
                                               json_values)})


@hsettings(max_examples=200, deadline=None)
@given(traits=trait_sets)
def test_the_migrations_sql_gives_the_regime_of_the_python_mapping(traits):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {regime_migration.regime_sql('t.traits')} FROM (SELECT %s::jsonb AS traits) t",
                       [json.dumps(traits)])
        assert cursor.fetchone()[0] == regime_for(traits, default="")
