"""Masking by what a value is as well as by its key, at any depth: the functions (with a property-based test), and
the same data through the API, the profile screen and the admin as a marketer sees it."""
import json
import string
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cdp.management.commands.seed_demo import demo_messages
from profiles.masking import (known_values, mask_identifier, mask_merge_record, mask_payload,
                              mask_text, mask_traits)
from profiles.models import Event, Identifier, Profile
from tests.factories import ApiTokenFactory, UserFactory

# --- the functions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, masked", [
    ("ann@example.com", "a•••@example.com"),
    ("Write to Ann.Lee+shop@mail.example.co.uk, please", "Write to A•••@mail.example.co.uk, please"),
    ("mailto:bo@x.io", "mailto:b•••@x.io"),
    ("+1 415 555 0100", "+1•••00"),
    ("(415) 555-0100", "(4•••00"),
    ("415.555.0100", "41•••00"),
    ("4155550100", "41•••00"),
    ("+44 20 7946 0958", "+4•••58"),
    ("call +49 30 901820 after 5", "call +4•••20 after 5"),
    ("phone:+14155550100", "phone:+1•••00"),
    ("tel: (415) 555-0100.", "tel: (4•••00."),
])
def test_text_with_an_email_or_a_phone_number_is_masked(text, masked):
    assert mask_text(text) == masked


@pytest.mark.parametrize("text", [
    "ORD-2125550100", "sku-4155550100", "SKU 1001", "119.00", "1234567.89", "1,234,567", "2026-01-02",
    "2026-01-02T10:00:00.123456+05:30", "2026-01-02 10:00:00", "02.01.2026", "12/31/2026", "1735689600",
    "1735689600000", "v1.2.3", "10.0.0.1", "192.168.100.200", "3f2b1c9e-8d7a-4b6c-9e8f-1a2b3c4d5e6f",
    "https://shop.example.com/p/sku-1009?ref=4155550100x", "@ann", "4 items", "ISBN 978-3-16-148410-0",
    "Trail Running Shoes", "",
])
def test_order_ids_prices_skus_dates_and_timestamps_are_not_phone_numbers(text):
    assert mask_text(text) == text


def test_keys_of_every_spelling_and_nesting_are_masked_and_name_only_among_traits():
    payload = {
        "type": "track", "event": "Order Completed", "userId": "u-1", "name": "Checkout",
        "properties": {"userEmail": "Ann@Example.com", "customer_email": "ann@example.com", "billingPhone": 4155550100,
                       "name": "Trail Running Shoes", "price": 119.0, "products": [{"sku": "sku-1", "name": "Hat",
                                                                                   "type": "phone", "id": "sku-9"}]},
        "context": {"traits": {"name": "Ann Lee", "First-Name": "Ann", "contacts": [{"email": "a@b.io"},
                                                                                      {"mobile": "+447911123456"}],
                               "email_verified": True, "phone": None},
                    "externalIds": [{"type": "email", "id": "crm-77", "collection": "users", "encoding": "none"}]},
    }
    assert mask_payload(payload) == {
        "type": "track", "event": "Order Completed", "userId": "u-1", "name": "Checkout",
        "properties": {"userEmail": "A•••@Example.com", "customer_email": "a•••@example.com",
                       "billingPhone": "41•••00", "name": "Trail Running Shoes", "price": 119.0,
                       "products": [{"sku": "sku-1", "name": "Hat", "type": "phone", "id": "sku-9"}]},
        "context": {"traits": {"name": "A•••", "First-Name": "A•••", "contacts": [{"email": "a•••@b.io"},
                                                                                   {"mobile": "+4•••56"}],
                               "email_verified": True, "phone": None},
                    "externalIds": [{"type": "email", "id": "c•••", "collection": "users", "encoding": "none"}]},
    }


def test_a_value_equal_to_one_of_the_profiles_identifiers_is_masked_whatever_its_form():
    # +1 555 555 0100 is not a valid number (no area code 555), so only the profile's identifiers find it.
    known = known_values([("email", "ann@example.com"), ("phone", "+15555550100"), ("user_id", "u-1")])
    data = {"ref": "ANN@EXAMPLE.COM", "alt": "+1 555 555 0100", "digits": "5555550100", "n": 15555550100,
            "note": "dup of +15555550100 (ann@example.com)", "user": "u-1"}
    assert mask_traits(data, known) == {"ref": "A•••@EXAMPLE.COM", "alt": "+1•••00", "digits": "55•••00",
                                        "n": "15•••00", "note": "dup of +1•••00 (a•••@example.com)", "user": "u-1"}
    assert mask_traits(data)["alt"] == "+1 555 555 0100"  # without them, it is not recognised as a number


def test_identifiers_and_merge_records_are_masked_by_type_and_by_value():
    assert mask_identifier("email", "ann@example.com") == "a•••@example.com"
    assert mask_identifier("user_id", "ann@example.com") == "a•••@example.com"
    assert mask_identifier("user_id", "u-123") == "u-123"
    assert mask_identifier("crm_email", "x-9") == "x•••"
    assert mask_merge_record(
        reason="shared identifiers: email:ann@example.com, user_id:bo@x.io",
        linking_identifiers=["email:ann@example.com", "user_id:bo@x.io"]) == (
        "shared identifiers: email:a•••@example.com, user_id:b•••@x.io",
        ["email:a•••@example.com", "user_id:b•••@x.io"])


# --- property: random JSON with personal data planted anywhere -------------------------------------------------

NEUTRAL_KEYS = st.sampled_from(["order_id", "sku", "price", "quantity", "items", "meta", "created", "flag", "data",
                                "extra", "properties", "context", "tags", "ref", "currency", "note", "product",
                                "total", "version", "traits"])
PERSONAL_KEYS = st.sampled_from(["email", "userEmail", "customer_email", "Email-Address", "phone", "mobile",
                                 "billingPhone", "contact_phone_number"])
# Valid numbers of several countries, varied in their last three digits.
EXAMPLES = [n for region in ("US", "GB", "DE", "FR", "IN", "BR", "AU", "JP", "ES", "NG")
            for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
            if (n := phonenumbers.example_number_for_type(region, kind)) is not None]


@dataclass
class Leaf:
    value: object
    planted: tuple[str, ...] = ()  # the forms of the personal value it holds, none for a neutral value


@st.composite
def phone_numbers(draw):
    example = draw(st.sampled_from(EXAMPLES))
    national = str(example.national_number)
    number = phonenumbers.parse(f"+{example.country_code}{national[:-3]}{draw(st.integers(0, 999)):03d}")
    assume(phonenumbers.is_valid_number(number))
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    formats = ["e164", "international"] + (["national", "digits"] if example.country_code == 1 else [])
    written = {"e164": e164,
               "international": phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
               "national": phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL),
               "digits": str(number.national_number)}[draw(st.sampled_from(formats))]
    return written, (written, e164, e164[1:])


@st.composite
def planted_leaves(draw):
    if draw(st.booleans()):
        email = draw(st.emails())
        value, forms, kind = email, (email,), "email"
    else:
        value, forms = draw(phone_numbers())
        kind = "phone"
    placed = draw(st.sampled_from([
        value, f"contact {value} today", f"({value})", f"{value}, thanks", [value],
        {draw(PERSONAL_KEYS): value}, {"type": kind, "id": value}, {"note": f"see: {value}"}]))
    return Leaf(placed, forms)


def neutral_leaves():
    return st.one_of(
        st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1), st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(), st.none(),
        st.from_regex(r"\Asku-[0-9]{3,8}\Z"), st.from_regex(r"\A[A-Z]{2,4}-[0-9]{4,12}\Z"),
        st.from_regex(r"\A[0-9]{1,6}\Z"),
        st.datetimes(timezones=st.sampled_from([timezone.utc, None])).map(lambda d: d.isoformat()),
        st.dates().map(lambda d: d.isoformat()),
        st.decimals(min_value=0, max_value=10 ** 7, places=2, allow_nan=False).map(str),
        st.text(alphabet=string.ascii_letters + " .,!-", max_size=30),
    ).map(Leaf)


def trees(leaves):
    return st.recursive(leaves, lambda children: st.lists(children, max_size=4) | st.dictionaries(
        NEUTRAL_KEYS, children, max_size=4), max_leaves=25)


def materialise(tree, path=(), leaves=None):
    """The JSON of a tree of Leafs, and each leaf with its path."""
    leaves = [] if leaves is None else leaves
    if isinstance(tree, Leaf):
        leaves.append((path, tree))
        return tree.value, leaves
    if isinstance(tree, list):
        return [materialise(item, (*path, i), leaves)[0] for i, item in enumerate(tree)], leaves
    return {key: materialise(item, (*path, key), leaves)[0] for key, item in tree.items()}, leaves


def at(data, path):
    for step in path:
        data = data[step]
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees(st.one_of(neutral_leaves(), planted_leaves())))
def test_planted_emails_and_phones_never_survive_and_other_values_are_untouched(tree):
    data, leaves = materialise({"properties": tree})

    masked = mask_payload(data)

    text = json.dumps(masked, ensure_ascii=False).lower()
    for path, leaf in leaves:
        for form in leaf.planted:
            assert form.lower() not in text, (form, at(masked, path))
        if not leaf.planted:
            assert at(masked, path) == leaf.value


@settings(max_examples=300, deadline=None)
@given(tree=trees(neutral_leaves()))
def test_json_without_personal_data_is_unchanged(tree):
    data, _ = materialise({"properties": tree})
    assert mask_payload(data) == data
    assert mask_traits(data) == data


def test_masking_a_page_of_events_is_fast():
    """One page of the timeline (50 events) is masked in well under a millisecond per event."""
    messages = demo_messages(people=400, seed=3, now=datetime(2026, 1, 1, tzinfo=timezone.utc))[:5000]
    known = known_values([("email", "ann@example.com"), ("phone", "+14155550100")])
    started = time.perf_counter()
    for message in messages:
        mask_payload(message, known)
    per_event = (time.perf_counter() - started) / len(messages)
    assert per_event < 0.001, f"{per_event * 1e6:.0f} µs per event"


# --- through the API, the profile screen and the admin -----------------------------------------------------------

ODD_PLACES = [
    {"type": "identify", "userId": "u-odd", "messageId": "o1", "traits": {
        "email": "ola@example.com", "contacts": [{"email": "ola.work@example.net"}, {"phone": "+1 415 555 0131"}],
        "userEmail": "ola.user@example.org", "plan": "pro"},
     "context": {"externalIds": [{"type": "email", "id": "ola.crm@example.com", "collection": "users",
                                  "encoding": "none"}]}},
    {"type": "track", "userId": "u-odd", "event": "Order Completed", "messageId": "o2",
     "properties": {"order_id": "ORD-2125550100", "revenue": 119.0, "sku": "sku-1009",
                    "customer_email": "ola.billing@example.com", "gift_note": "for OLA@example.com, call 415-555-0132"},
     "timestamp": "2026-01-02T10:00:00Z"},
]
HIDDEN = ["ola@example.com", "ola.work@example.net", "+1 415 555 0131", "+14155550131", "ola.user@example.org",
          "ola.crm@example.com", "ola.billing@example.com", "415-555-0132", "4155550132"]


@pytest.fixture
def ola(post_collect, drain, db):
    for message in ODD_PLACES:
        post_collect("batch", {"batch": [message]})
        drain()
    return Profile.objects.get(identifiers__value="u-odd")


def _hidden_in(body: str) -> list[str]:
    return [value for value in HIDDEN if value.lower() in body.lower()]


def test_the_api_masks_personal_data_in_odd_places_for_a_marketer(client, ola):
    ApiTokenFactory(user=UserFactory(groups=["Marketer"]), key="cdp_marketer_odd")
    headers = {"HTTP_AUTHORIZATION": "Bearer cdp_marketer_odd"}

    detail = client.get(f"/api/v1/profiles/{ola.pk}/", **headers)
    events = client.get(f"/api/v1/profiles/{ola.pk}/events/", **headers)
    listed = client.get("/api/v1/profiles/", {"q": "u-odd"}, **headers)

    assert _hidden_in(detail.content.decode() + events.content.decode() + listed.content.decode()) == []
    assert detail.json()["traits"] == {
        "email": "o•••@example.com", "contacts": [{"email": "o•••@example.net"}, {"phone": "+1•••31"}],
        "userEmail": "o•••@example.org", "plan": "pro"}
    by_id = {e["message_id"]: e for e in events.json()["results"]}
    order, identify = by_id["o2"], by_id["o1"]
    assert order["payload"]["properties"] == {
        "order_id": "ORD-2125550100", "revenue": 119.0, "sku": "sku-1009", "customer_email": "o•••@example.com",
        "gift_note": "for O•••@example.com, call 41•••32"}
    assert order["payload"]["timestamp"] == "2026-01-02T10:00:00Z"
    assert identify["payload"]["context"]["externalIds"][0]["id"] == "o•••@example.com"


def test_a_privacy_officer_sees_the_same_data_in_clear(client, ola):
    ApiTokenFactory(user=UserFactory(groups=["Privacy officer"]), key="cdp_officer_odd")
    headers = {"HTTP_AUTHORIZATION": "Bearer cdp_officer_odd"}
    body = client.get(f"/api/v1/profiles/{ola.pk}/", **headers).content.decode()
    body += client.get(f"/api/v1/profiles/{ola.pk}/events/", **headers).content.decode()
    assert set(_hidden_in(body)) == set(HIDDEN) - {"4155550132", "+14155550131"}  # as sent, not normalised


def test_the_profile_screen_masks_personal_data_in_odd_places_for_a_marketer(client, ola):
    client.force_login(UserFactory(groups=["Marketer"]))
    page = client.get(f"/profiles/{ola.pk}/").content.decode()
    timeline = client.get(f"/profiles/{ola.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert _hidden_in(page + timeline) == []
    assert "o•••@example.org" in page and "ORD-2125550100" in page


def test_the_admin_masks_event_payloads_and_profile_traits_for_a_marketer(client, ola):
    client.force_login(UserFactory(is_staff=True, groups=["Marketer"]))
    order = Event.objects.get(message_id="o2")
    event_page = client.get(f"/admin/profiles/event/{order.pk}/change/").content.decode()
    profile_page = client.get(f"/admin/profiles/profile/{ola.pk}/change/").content.decode()
    assert _hidden_in(event_page + profile_page) == []
    assert "ORD-2125550100" in event_page and "sku-1009" in event_page and "o•••@example.com" in event_page
    assert "o•••@example.net" in profile_page and Identifier.objects.filter(profile=ola).count() == 3


def test_masking_a_page_of_events_costs_the_same_queries_whatever_its_length(client, ola, post_collect, drain):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ApiTokenFactory(user=UserFactory(groups=["Marketer"]), key="cdp_marketer_q")

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(f"/api/v1/profiles/{ola.pk}/events/", HTTP_AUTHORIZATION="Bearer cdp_marketer_q",
                              ).status_code == 200
        return [q["sql"] for q in captured.captured_queries]

    queries()  # the token's first use is written once; the counts below compare requests that read only
    few = queries()
    post_collect("batch", {"batch": [{"type": "track", "userId": "u-odd", "event": "Viewed", "messageId": f"v{i}",
                                      "properties": {"email": f"ola{i}@example.com"}} for i in range(30)]})
    drain()
    many = queries()
    assert len(many) == len(few)
    # The profile's identifiers (read with the profile) and the known values of the page's profiles: one query each.
    assert len([q for q in many if 'FROM "profiles_identifier"' in q]) == 2
