"""Consent API shapes: the state per purpose, ledger entries, and a choice to record."""
import orjson
from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from consent.models import ConsentEntry, PrivacyRequest, PrivacyRequestTransition, Regime, RequestKind
from profiles.common.fields import NO_NUL, NOT_BLANK


class PurposeStateSerializer(serializers.Serializer):
    purpose = serializers.CharField()
    name = serializers.CharField()
    granted = serializers.BooleanField()
    explicit = serializers.BooleanField(help_text="False when no choice was made and the regime's default applies.")
    source = serializers.CharField()
    recorded_at = serializers.DateTimeField(allow_null=True)


class ProfileConsentSerializer(serializers.Serializer):
    profile_id = serializers.IntegerField()
    regime = serializers.CharField()
    purposes = PurposeStateSerializer(many=True)


class ConsentEntrySerializer(serializers.ModelSerializer):
    purpose = serializers.SlugRelatedField(slug_field="key", read_only=True)

    class Meta:
        model = ConsentEntry
        fields = ["id", "profile_id", "purpose", "granted", "source", "regime", "recorded_at", "created_at",
                  "policy_version", "tc_string", "ip_hash", "user_agent", "event_id", "message_id", "reason"]


class ConsentListQuerySerializer(serializers.Serializer):
    profile_id = serializers.IntegerField(required=False, help_text="Entries of this profile and of every "
                                                                    "profile merged into it.")
    purpose = serializers.SlugField(required=False)


class SubjectIdentifierSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=64, validators=[NOT_BLANK], help_text=(
        "user_id, anonymous_id, email, phone, or an external id type as a message's context.externalIds "
        "names it (stored lower-cased)."))
    value = serializers.CharField(max_length=512, validators=[NOT_BLANK])


class ConsentRecordSerializer(serializers.Serializer):
    profile_id = serializers.IntegerField(required=False)
    identifier = SubjectIdentifierSerializer(required=False, help_text="Instead of profile_id.")
    purpose = serializers.SlugField()
    granted = serializers.BooleanField()
    recorded_at = serializers.DateTimeField(required=False, help_text="When the person chose; default now.")
    policy_version = serializers.CharField(max_length=64, required=False, default="", validators=[NOT_BLANK])
    ip = serializers.IPAddressField(required=False, default="", help_text="The person's address, stored hashed.")
    user_agent = serializers.CharField(max_length=512, required=False, default="", validators=[NOT_BLANK])

    def validate(self, data):
        if ("profile_id" in data) == ("identifier" in data):
            raise serializers.ValidationError({"profile_id": "Give exactly one of profile_id and identifier."})
        return data


class ConsentRecordSchema(OpenApiSerializerExtension):
    """States what validate() checks: exactly one of profile_id and identifier."""

    target_class = ConsentRecordSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        ip = schema["properties"]["ip"]
        schema["properties"]["ip"] = {**ip, "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
        return {**schema, "oneOf": [{"required": ["profile_id"]}, {"required": ["identifier"]}]}


class PrivacyRequestCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=RequestKind.choices)
    regime = serializers.ChoiceField(choices=Regime.choices)
    identifiers = SubjectIdentifierSerializer(many=True, allow_empty=False)
    notes = serializers.CharField(required=False, default="", allow_blank=True, validators=[NO_NUL])
    allow_recreation = serializers.BooleanField(required=False, default=False,
                                                help_text="Deletion only: let later events create a new profile.")
    changes = serializers.DictField(required=False, default=dict,
                                    help_text='Rectification only: the traits to set, {"name": "Ann Lee"}.')

    def validate_changes(self, changes):
        # The changes are stored as jsonb, which cannot hold a NUL character.
        if b"\\u0000" in orjson.dumps(changes):
            raise serializers.ValidationError("Null characters are not allowed.", code="null_characters_not_allowed")
        return changes

    def validate(self, data):
        if data["kind"] == "rectification" and not data["changes"]:
            raise serializers.ValidationError({"changes": "A rectification request needs the traits to change."})
        return data


class PrivacyRequestCreateSchema(OpenApiSerializerExtension):
    """States what the serializer checks beyond its fields: at least one identifier, and a rectification's
    changes (OpenAPI 3.0 has no if/then, so the kinds are split in two)."""

    target_class = PrivacyRequestCreateSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["properties"]["identifiers"]["minItems"] = 1
        text = {"type": "string", "pattern": NO_NUL.regex.pattern.replace("\\x", "\\u00")}
        schema["properties"]["changes"] = {
            **schema["properties"]["changes"],
            "additionalProperties": {"nullable": True, "anyOf": [text, {"type": "number"}, {"type": "boolean"}]},
            "description": 'Rectification only: the traits to set, {"name": "Ann Lee"}. Lists and objects are '
                           "taken too. No NUL character in a name or a value (OpenAPI 3.0 cannot state it for names)."}
        # Patterns rather than enums, so the kind keeps its one enum component.
        rectification = {"pattern": f"^{RequestKind.RECTIFICATION.value}$"}
        return {**schema, "oneOf": [
            {"properties": {"kind": {"not": rectification}}},
            {"properties": {"kind": rectification, "changes": {"type": "object", "minProperties": 1}},
             "required": ["changes"]}]}


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(validators=[NOT_BLANK], help_text="Told to the subject; not blank.")


class TransitionSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = PrivacyRequestTransition
        fields = ["at", "action", "from_status", "to_status", "actor", "note"]


class PrivacyRequestSerializer(serializers.ModelSerializer):
    assignee = serializers.SlugRelatedField(slug_field="username", read_only=True)
    transitions = TransitionSerializer(many=True, read_only=True)

    class Meta:
        model = PrivacyRequest
        fields = ["id", "kind", "regime", "status", "identifiers", "received_at", "acknowledge_by", "due_on",
                  "extended_reason", "verified_at", "completed_at", "rejected_reason", "assignee", "notes",
                  "allow_recreation", "changes", "progress", "receipt", "transitions"]
