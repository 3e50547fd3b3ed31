"""The admin of destinations and deliveries: the secret is never on a page, a delivery's body is masked for a role
without the personal data permission, and the Resend action queues dead letters again."""
import pytest
from django.urls import reverse
from django.utils import timezone

from segments.models import Delivery, Destination
from segments.services.deliveries import deliveries_enqueue
from tests.factories import UserFactory
from tests.segments.conftest import SECRET

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(client):
    user = UserFactory(username="mia", groups=["Marketer"], is_staff=True)
    client.force_login(user)
    return user


def test_the_secret_is_on_no_destination_page_and_kept_when_the_form_leaves_it_empty(client, marketer, destination):
    pages = [client.get(reverse("admin:segments_destination_changelist")),
             client.get(reverse("admin:segments_destination_change", args=[destination.pk]))]
    assert [p.status_code for p in pages] == [200, 200]
    assert not [p for p in pages if SECRET.encode() in p.content]

    response = client.post(reverse("admin:segments_destination_change", args=[destination.pk]), {
        "name": "CRM renamed", "url": destination.url, "secret": "", "active": "on"})
    assert response.status_code == 302
    destination.refresh_from_db()
    assert (destination.name, destination.secret) == ("CRM renamed", SECRET)

    refused = client.post(reverse("admin:segments_destination_add"), {"name": "New", "url": "https://a.example.com/",
                                                                       "secret": "", "active": "on"})
    assert refused.status_code == 200 and b"A new destination needs a secret." in refused.content
    assert Destination.objects.count() == 1


def test_a_marketer_sees_deliveries_masked_and_resends_dead_letters(client, marketer, segment, make_profiles,
                                                                     django_capture_on_commit_callbacks):
    ann, bob = make_profiles("ann", "bob")
    deliveries_enqueue(segment_id=segment.pk, entered=[ann, bob], exited=[], occurred_at=timezone.now())
    Delivery.objects.filter(profile_id=ann).update(status="dead", attempts=8, next_attempt_at=None)
    dead = Delivery.objects.get(profile_id=ann)

    pages = [client.get(reverse("admin:segments_delivery_changelist") + "?status__exact=dead"),
             client.get(reverse("admin:segments_delivery_change", args=[dead.pk]))]
    assert [p.status_code for p in pages] == [200, 200]
    assert str(dead.delivery_id).encode() in pages[0].content
    assert str(Delivery.objects.get(profile_id=bob).delivery_id).encode() not in pages[0].content
    assert not [p for p in pages if b"ann@example.com" in p.content]
    assert "a•••@example.com".encode() in pages[1].content  # the body is there, masked

    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(reverse("admin:segments_delivery_changelist"), {
            "action": "resend", "_selected_action": [dead.pk, Delivery.objects.get(profile_id=bob).pk]})
    assert response.status_code == 302
    assert len(queued) == 1
    assert list(Delivery.objects.order_by("profile_id").values_list("status", "attempts")) == [
        ("pending", 0), ("pending", 0)]


def test_an_admin_with_the_personal_data_permission_sees_the_body_whole(admin_client, segment, make_profiles):
    [ann] = make_profiles("ann")
    deliveries_enqueue(segment_id=segment.pk, entered=[ann], exited=[], occurred_at=timezone.now())
    page = admin_client.get(reverse("admin:segments_delivery_change", args=[Delivery.objects.get().pk]))
    assert page.status_code == 200 and b"ann@example.com" in page.content
