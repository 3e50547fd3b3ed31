"""The web screens: login, dashboard numbers from ingested data, the profile 360 page, and the demo seeder."""
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from cdp import selectors
from profiles.models import Event, MergeRecord, PendingEvent, Profile

pytestmark = pytest.mark.django_db


def _iso(delta: timedelta) -> str:
    return (timezone.now() - delta).isoformat()


@pytest.fixture
def marketer(client, django_user_model):
    user = django_user_model.objects.create_user("m", password="pw-for-tests")
    user.groups.add(Group.objects.get(name="Marketer"))
    client.force_login(user)
    return user


@pytest.fixture
def two_device_person(post_collect, drain):
    """Ann browses on a laptop and a phone, signs in on both, then orders once."""
    post_collect("batch", {"batch": [
        {"type": "page", "anonymousId": "laptop", "name": "Home", "messageId": "p1",
         "timestamp": _iso(timedelta(days=3))},
        {"type": "track", "anonymousId": "laptop", "event": "Product Viewed", "messageId": "t1",
         "properties": {"name": "Sun Hat", "price": 29}, "timestamp": _iso(timedelta(days=3))},
        {"type": "identify", "anonymousId": "laptop", "userId": "ann-1", "messageId": "i1",
         "traits": {"email": "ann@example.com", "name": "Ann Lee"}, "timestamp": _iso(timedelta(days=2))},
        {"type": "page", "anonymousId": "phone", "name": "Sale", "messageId": "p2",
         "timestamp": _iso(timedelta(days=1))},
    ]})
    drain()
    post_collect("batch", {"batch": [
        {"type": "identify", "anonymousId": "phone", "userId": "ann-1", "messageId": "i2",
         "traits": {"phone": "+1 415 555 0100"}, "timestamp": _iso(timedelta(hours=5))},
        {"type": "track", "userId": "ann-1", "event": "Order Completed", "messageId": "o1",
         "properties": {"revenue": 42.5, "order_id": "ORD-1"}, "timestamp": _iso(timedelta(hours=4))},
    ]})
    drain()
    return Profile.objects.get(merged_into__isnull=True)


def test_screens_require_login(client, source):
    profile = Profile.objects.create(created_at=timezone.now(), updated_at=timezone.now())
    for url in (reverse("dashboard"), reverse("profile-list"), reverse("profile-detail", args=[profile.id])):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login") + "?next=")


def test_login_page_renders(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content and b'name="password"' in response.content


def test_dashboard_counts_come_from_ingested_events(client, marketer, two_device_person, post_collect):
    # One more event accepted but not processed: it shows as ingestion lag, not in the event charts yet.
    post_collect("track", {"anonymousId": "late", "event": "Product Viewed", "messageId": "late-1"})

    response = client.get(reverse("dashboard"))

    assert response.status_code == 200
    stats = response.context["stats"]
    assert stats["profiles_total"] == 1 and stats["profiles_identified"] == 1
    assert stats["merges_total"] == 1 and stats["merges_refused"] == 0
    assert stats["events_total"] == 6
    assert sum(stats["events_by_type"]["identify"]) == 2 and sum(stats["events_by_type"]["page"]) == 2
    assert sum(stats["events_by_type"]["track"]) == 2
    assert stats["top_events"] == [{"event": "Order Completed", "n": 1}, {"event": "Product Viewed", "n": 1}]
    # The merge falls on the day of the event that linked the phone (five hours ago: yesterday just after midnight).
    linked_on = timezone.localtime(timezone.now() - timedelta(hours=5)).date().isoformat()
    assert sum(stats["new_profiles"]) == 1 and stats["merges"][stats["days"].index(linked_on)] == 1
    assert sum(stats["merges"]) == 1
    assert stats["lag"].pending == 1 and stats["lag"].oldest_age_seconds >= 0
    assert len(stats["days"]) == selectors.DASHBOARD_DAYS and stats["days"][-1] == timezone.localdate().isoformat()
    html = response.content.decode()
    assert 'id="chart-data"' in html and "chart-4.6.1.umd.min.js" in html
    for canvas in ("chart-events", "chart-profiles", "chart-merges"):
        assert f'<canvas id="{canvas}"' in html


def test_dashboard_uses_a_fixed_number_of_queries(client, marketer, two_device_person, django_assert_max_num_queries):
    # Two of them name the sources and count their events.
    for days in ("7", "90"):
        with django_assert_max_num_queries(14):
            assert client.get(reverse("dashboard"), {"days": days}).status_code == 200


def test_profile_page_shows_identifiers_traits_timeline_and_merges(client, marketer, two_device_person):
    profile = two_device_person

    response = client.get(reverse("profile-detail", args=[profile.id]))

    assert response.status_code == 200
    html = response.content.decode()
    # A marketer sees email, phone and name masked.
    for text in ("ann-1", "a•••@example.com", "+1•••00", "laptop", "phone", "A•••", "Order Completed",
                 "Product Viewed", "$42.50"):
        assert text in html, text
    for text in ("ann@example.com", "+14155550100", "Ann Lee"):
        assert text not in html, text
    assert set(response.context["identifiers"]) == {"anonymous_id", "email", "phone", "user_id"}
    assert [m.outcome for m in response.context["merges"]] == ["merged"]
    assert [e.message_id for e in response.context["timeline"]] == ["o1", "i2", "p2", "i1", "t1", "p1"]


def test_timeline_is_paged_newest_first(client, marketer, post_collect, drain):
    post_collect("batch", {"batch": [
        {"type": "track", "userId": "u", "event": f"E{i:02d}", "messageId": f"m{i}",
         "timestamp": _iso(timedelta(minutes=60 - i))}
        for i in range(30)]})
    drain()
    profile = Profile.objects.get()
    url = reverse("profile-detail", args=[profile.id])

    first = client.get(url)
    more = client.get(url + "?page=2", HTTP_HX_REQUEST="true")

    assert [e.event for e in first.context["timeline"]] == [f"E{i:02d}" for i in range(29, 4, -1)]
    assert b"Load more events" in first.content
    assert more.templates[0].name == "profiles/_timeline.html"
    assert [e.event for e in more.context["timeline"]] == [f"E{i:02d}" for i in range(4, -1, -1)]
    assert b"Load more events" not in more.content


def test_merged_profile_id_redirects_to_survivor(client, marketer, two_device_person):
    merged = Profile.objects.get(merged_into__isnull=False)
    assert merged.merged_into_id == two_device_person.id

    response = client.get(reverse("profile-detail", args=[merged.id]))

    assert response.status_code == 302
    assert response.url == reverse("profile-detail", args=[two_device_person.id])


def test_profile_merged_twice_redirects_to_the_last_survivor(client, marketer):
    now = timezone.now()
    final = Profile.objects.create(created_at=now, updated_at=now)
    middle = Profile.objects.create(created_at=now, updated_at=now, merged_into=final)
    first = Profile.objects.create(created_at=now, updated_at=now, merged_into=middle)

    response = client.get(reverse("profile-detail", args=[first.id]))

    assert response.status_code == 302 and response.url == reverse("profile-detail", args=[final.id])


def test_unknown_profile_is_404(client, marketer):
    assert client.get(reverse("profile-detail", args=[999999])).status_code == 404


def test_profile_list_searches_whole_values_for_a_marketer(client, marketer, two_device_person, post_collect,
                                                              drain):
    post_collect("identify", {"userId": "bob-7", "traits": {"name": "Bob Stone", "email": "bob@example.org"},
                              "messageId": "b1"})
    drain()

    def found(query):
        return [p.id for p in client.get(reverse("profile-list"), {"q": query}).context["page"]]

    everyone = client.get(reverse("profile-list"))
    by_name = client.get(reverse("profile-list"), {"q": "bob stone"})
    nobody = client.get(reverse("profile-list"), {"q": "zzz"})

    assert everyone.context["page"].paginator.count == 2
    assert found("ANN@example.com") == [two_device_person.id]  # normalised like the identifier
    assert found("(415) 555-0100") == [two_device_person.id]  # phones too
    assert found("laptop") == [two_device_person.id]
    assert [p.traits["name"] for p in by_name.context["page"]] == ["B•••"]  # found by name, shown masked
    # Parts of a masked value find nothing, so it cannot be recovered letter by letter.
    assert found("ANN@example") == found("a") == found("stone") == found("lapt") == []
    assert nobody.context["page"].paginator.count == 0 and b"No profiles match" in nobody.content
    assert client.get(reverse("profile-list"), {"q": "\x00"}).status_code == 200


def test_profile_list_searches_parts_for_a_privacy_officer(client, django_user_model, two_device_person):
    officer = django_user_model.objects.create_user("po", password="pw-for-tests")
    officer.groups.add(Group.objects.get(name="Privacy officer"))
    client.force_login(officer)

    def found(query):
        return [p.id for p in client.get(reverse("profile-list"), {"q": query}).context["page"]]

    assert found("ANN@example") == found("lee") == found("lapt") == [two_device_person.id]
    assert found("zzz") == []


def test_seed_demo_builds_profiles_orders_and_merges():
    call_command("seed_demo", profiles=20, seed=3)

    live = Profile.objects.filter(merged_into__isnull=True)
    assert live.count() == 20
    assert PendingEvent.objects.count() == 0
    assert Event.objects.filter(event="Order Completed").exists()
    assert live.filter(computed__frequency_orders__gt=0).count() == 6
    assert all(p.computed["monetary_value"] > 0 for p in live.filter(computed__frequency_orders__gt=0))
    merges = MergeRecord.objects.filter(outcome=MergeRecord.Outcome.MERGED)
    assert merges.count() == 2
    # A person on two devices: both anonymous ids and one user id end on one live profile.
    for merge in merges:
        survivor = Profile.objects.get(id=merge.into_profile_id)
        assert survivor.merged_into_id is None
        kinds = list(survivor.identifiers.values_list("type", flat=True))
        assert kinds.count("anonymous_id") == 2 and kinds.count("user_id") == 1
        assert survivor.traits["email"] and survivor.traits["name"]


def test_seed_demo_runs_a_banner_experiment_whose_report_has_exposures_and_clicks():
    from campaigns.models import Campaign, Conversion, Exposure
    from campaigns.selectors import campaign_results

    call_command("seed_demo", profiles=60, seed=4)
    spring = Campaign.objects.get(key="spring-trails")
    assert spring.status == "active" and Campaign.objects.get(key="cart-reminder").status == "draft"
    results = {row["variant"]: row for row in campaign_results(campaign=spring)["variants"]}
    assert set(results) == {"control", "A", "B"}
    assert sum(row["exposed"] for row in results.values()) == Exposure.objects.count() > 30
    assert sum(row["conversions"] for row in results.values()) == Conversion.objects.count() > 0
    oldest = Exposure.objects.order_by("shown_at").first().shown_at
    assert oldest < timezone.now() - timedelta(days=3)  # spread over the last two weeks, not all today


def test_seed_demo_is_deterministic_and_if_empty_skips():
    call_command("seed_demo", profiles=5, seed=11)
    first = sorted(Event.objects.values_list("message_id", flat=True))

    call_command("seed_demo", profiles=5, seed=11, if_empty=True)
    call_command("seed_demo", profiles=5, seed=11)

    assert sorted(Event.objects.values_list("message_id", flat=True)) == first
    assert Profile.objects.filter(merged_into__isnull=True).count() == 5


def test_create_demo_users_creates_one_login_per_role(django_user_model):
    call_command("create_demo_users")
    call_command("create_demo_users")

    users = {u.username: u for u in django_user_model.objects.all()}
    assert set(users) == {"admin", "marketer", "privacy"}
    assert users["admin"].is_superuser and not users["marketer"].is_superuser
    assert all(u.is_staff for u in users.values())
    assert [g.name for g in users["marketer"].groups.all()] == ["Marketer"]
    assert [g.name for g in users["privacy"].groups.all()] == ["Privacy officer"]
    assert users["marketer"].check_password("marketer-demo") and users["privacy"].check_password("privacy-demo")
    assert users["admin"].check_password("admin-demo")
