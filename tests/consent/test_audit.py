"""The audit log: what is recorded, the hash chain, and verify_audit finding the first altered entry."""
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from consent.models import AuditEntry
from consent.services.audit import audit_record, audit_verify

pytestmark = pytest.mark.django_db


def test_actions_on_requests_and_consent_are_audited_without_personal_data(client, post_collect, drain):
    from tests.factories import ApiTokenFactory, UserFactory

    ApiTokenFactory(user=UserFactory(username="olga", groups=["Privacy officer"]), key="k")
    auth = {"HTTP_AUTHORIZATION": "Bearer k"}
    post_collect("identify", {"userId": "u1", "traits": {"email": "ursula@example.com"}, "messageId": "1",
                              "context": {"consent": {"categoryPreferences": {"Email": True}}}})
    drain()
    client.post("/api/v1/consents/", {"identifier": {"type": "email", "value": "ursula@example.com"},
                                      "purpose": "analytics", "granted": False}, content_type="application/json",
                **auth)
    rid = client.post("/api/v1/privacy-requests/", {"kind": "access", "regime": "gdpr", "identifiers": [
        {"type": "email", "value": "ursula@example.com"}]}, content_type="application/json", **auth).json()["id"]
    client.post(f"/api/v1/privacy-requests/{rid}/verify/", content_type="application/json", **auth)

    log = list(AuditEntry.objects.values_list("actor", "action", "target_type"))
    assert log == [("pipeline", "consent.collected", "consent_entries"), ("olga", "consent.record", "profile"),
                   ("olga", "privacy_request.create", "privacy_request"),
                   ("olga", "privacy_request.verify", "privacy_request")]
    assert "ursula" not in str(list(AuditEntry.objects.values_list("details", flat=True)))
    assert audit_verify() == (4, None)
    call_command("verify_audit")


def test_the_database_refuses_to_change_the_log():
    entry = audit_record(actor="olga", action="test", target_type="profile", target_id=1)
    for statement in ("UPDATE consent_auditentry SET actor = 'eve' WHERE id = %s",
                      "DELETE FROM consent_auditentry WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [entry.pk])


def test_verify_audit_names_the_first_entry_someone_altered_behind_the_triggers_back():
    entries = [audit_record(actor="olga", action="test", target_type="profile", target_id=i) for i in range(4)]
    with connection.cursor() as cursor:  # what a database owner could do
        cursor.execute("ALTER TABLE consent_auditentry DISABLE TRIGGER consent_audit_append_only")
        cursor.execute("UPDATE consent_auditentry SET target_id = 99 WHERE id = %s", [entries[2].pk])
        cursor.execute("ALTER TABLE consent_auditentry ENABLE TRIGGER consent_audit_append_only")
    checked, broken = audit_verify()
    assert (checked, broken.pk) == (2, entries[2].pk)
    with pytest.raises(CommandError, match=f"broken at entry {entries[2].pk}"):
        call_command("verify_audit")
