"""The six seeded purposes, the roles' consent permissions, and a ledger the database keeps append-only."""
from django.db import migrations

from profiles.common.permissions import grant

# key, name, legal basis, GDPR default, CCPA default, TCF v2 purposes, Segment consent categories.
# TCF purposes: 1 store/access on a device, 2-4 advertising, 5-6 personalised content, 7 ad measurement,
# 8 content measurement, 9 market research, 10 product development.
PURPOSES = [
    ("analytics", "Analytics", "consent", False, True, [1, 8, 9, 10], ["Analytics", "Performance"]),
    ("personalization", "Personalization", "consent", False, True, [1, 5, 6], ["Functional", "Personalization"]),
    ("marketing_email", "Marketing by email", "consent", False, True, [], ["Email"]),
    ("marketing_sms", "Marketing by SMS", "consent", False, True, [], ["SMS"]),
    ("advertising", "Advertising", "consent", False, True, [1, 2, 3, 4, 7], ["Advertising", "Targeting"]),
    ("sale_sharing", "Sale or sharing of personal information", "consent", False, True, [], ["Sale", "Sharing"]),
]
ROLES = {
    "Marketer": ["view_purpose", "view_consentstate"],
    "Privacy officer": ["view_purpose", "add_purpose", "change_purpose", "view_consententry", "add_consententry",
                        "view_consentstate"],
}
# Only erasure may touch an entry: it clears the profile link and the proof of a deleted subject.
APPEND_ONLY = """
CREATE OR REPLACE FUNCTION consent_entry_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'consent ledger entries are never deleted (entry %)', OLD.id;
    END IF;
    IF NEW.purpose_id <> OLD.purpose_id OR NEW.granted <> OLD.granted OR NEW.source <> OLD.source
       OR NEW.regime <> OLD.regime OR NEW.recorded_at <> OLD.recorded_at OR NEW.created_at <> OLD.created_at
       OR NEW.policy_version <> OLD.policy_version OR NEW.reason <> OLD.reason
       OR NEW.event_id IS DISTINCT FROM OLD.event_id
       OR (NEW.profile_id IS NOT NULL AND NEW.profile_id IS DISTINCT FROM OLD.profile_id)
       OR (NEW.tc_string <> OLD.tc_string AND NEW.tc_string <> '')
       OR (NEW.ip_hash <> OLD.ip_hash AND NEW.ip_hash <> '')
       OR (NEW.user_agent <> OLD.user_agent AND NEW.user_agent <> '')
       OR (NEW.message_id <> OLD.message_id AND NEW.message_id <> '') THEN
        RAISE EXCEPTION 'consent ledger entry % is append-only: history is never rewritten', OLD.id;
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS consent_entry_append_only ON consent_consententry;
CREATE TRIGGER consent_entry_append_only BEFORE UPDATE OR DELETE ON consent_consententry
    FOR EACH ROW EXECUTE FUNCTION consent_entry_append_only();
"""


def forwards(apps, schema_editor):
    Purpose = apps.get_model("consent", "Purpose")
    for key, name, basis, gdpr, ccpa, tcf, categories in PURPOSES:
        Purpose.objects.update_or_create(key=key, defaults={
            "name": name, "legal_basis": basis, "gdpr_default": gdpr, "ccpa_default": ccpa, "tcf_purposes": tcf,
            "segment_categories": categories})
    grant(apps, app_label="consent", roles={**ROLES, "Admin": None})
    schema_editor.execute(APPEND_ONLY, params=None)


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_ledger"), ("profiles", "0002_rules_and_roles")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
