"""/healthz and /readyz, and what the screens say when no worker consumes a queue, with a real worker and broker."""
import pytest
import redis
from django.contrib.auth.models import Group
from django.urls import reverse

from consent.models import PrivacyRequest
from consent.services.privacy import privacy_request_create, privacy_request_execute, privacy_request_verify


def test_healthz_answers_while_the_process_lives(client):
    response = client.get("/healthz")

    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_a_deletion_waits_visibly_until_a_plain_worker_starts(client, django_user_model, post_collect, drain,
                                                             subprocess_env, start_celery_worker, wait_until):
    redis.Redis.from_url(subprocess_env["REDIS_URL"]).flushdb()
    post_collect("identify", {"userId": "zoe-42", "traits": {"email": "zoe@example.org"}, "messageId": "z1"})
    drain()
    post_collect("track", {"userId": "max-7", "event": "Waiting", "messageId": "m1"})  # queued, not processed
    request = privacy_request_create(kind="deletion", regime="gdpr",
                                     identifiers=[{"type": "user_id", "value": "zoe-42"}])
    privacy_request_verify(request_id=request.pk)
    privacy_request_execute(request_id=request.pk)
    officer = django_user_model.objects.create_user("po", password="pw-for-tests")
    officer.groups.add(Group.objects.get(name="Privacy officer"))
    client.force_login(officer)

    waiting = client.get("/readyz")
    queue_screen = client.get(reverse("privacy-queue"))

    assert waiting.status_code == 503
    body = waiting.json()
    assert body["ready"] is False and body["database"] == {"ok": True}
    assert body["broker"] == {"ok": True, "error": ""}
    assert body["queues"]["privacy"] == {"consumed": False, "workers": 0, "in_process": False, "length": 1}
    assert body["queues"]["ingest"]["consumed"] is False and body["queues"]["ingest"]["length"] >= 1
    assert body["pipeline"]["pending_events"] == 1 and body["pipeline"]["lag_seconds"] >= 0
    assert b"No worker consumes the privacy queue" in queue_screen.content
    assert PrivacyRequest.objects.get(pk=request.pk).status == "in_progress"

    start_celery_worker()

    wait_until(lambda: PrivacyRequest.objects.filter(pk=request.pk, status="completed").exists(), seconds=60,
               what="the erasure, once a worker consumes the privacy queue")
    ready = wait_until(lambda: (r := client.get("/readyz")).status_code == 200 and r, seconds=30,
                       what="/readyz to see the worker")
    assert {name: q["consumed"] for name, q in ready.json()["queues"].items()} == {
        "ingest": True, "privacy": True, "segments": True, "webhooks": True, "campaigns": True, "learning": True}
    assert ready.json()["queues"]["privacy"]["workers"] == 1
    assert ready.json()["pipeline"] == {"pending_events": 0, "lag_seconds": 0}
    assert b"No worker consumes the privacy queue" not in client.get(reverse("privacy-queue")).content
