"""Serializers of the profiles API: output shapes only, plus the query parameters each view accepts."""
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from profiles.common.fields import NO_NUL, NOT_BLANK
from profiles.masking import (NOTHING_KNOWN, known_values, mask_identifier, mask_merge_record, mask_payload,
                              mask_traits, personal_identifiers)
from profiles.models import Event, Identifier, MergeRecord, Profile


class MaskingMixin:
    """Masks personal data when the view says the reader's role may not see it (context["mask"])."""

    def masking(self) -> bool:
        return bool(self.context.get("mask"))

    def known(self):
        """The profile's own emails and phones, which are masked wherever they appear (set by the parent)."""
        return self.context.get("known", NOTHING_KNOWN)


class IdentifierSerializer(MaskingMixin, serializers.ModelSerializer):
    class Meta:
        model = Identifier
        fields = ["type", "value", "first_seen"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if self.masking():
            data["value"] = mask_identifier(data["type"], data["value"])
        return data


class MaskedTraitsMixin(MaskingMixin):
    def to_representation(self, instance):
        data = super().to_representation(instance)
        if self.masking():
            # Reads the prefetched identifiers; filtering the manager would cost a query per profile.
            data["traits"] = mask_traits(data["traits"], known_values(instance.identifiers.all()))
        return data


class ProfileListSerializer(MaskedTraitsMixin, serializers.ModelSerializer):
    identifiers = IdentifierSerializer(many=True, read_only=True)

    class Meta:
        model = Profile
        fields = ["id", "identifiers", "traits", "event_count", "first_seen", "last_seen"]


class MergeRecordSerializer(MaskingMixin, serializers.ModelSerializer):
    into_profile = serializers.IntegerField(source="into_profile_id")
    other_profile = serializers.IntegerField(source="other_profile_id", allow_null=True)

    class Meta:
        model = MergeRecord
        fields = ["id", "outcome", "into_profile", "other_profile", "reason", "linking_identifiers",
                  "moved_identifiers", "moved_events", "message_id", "created_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if self.masking():
            data["reason"], data["linking_identifiers"] = mask_merge_record(
                reason=data["reason"], linking_identifiers=data["linking_identifiers"], known=self.known())
        return data


class ProfileDetailSerializer(MaskedTraitsMixin, serializers.ModelSerializer):
    identifiers = IdentifierSerializer(many=True, read_only=True)
    merges = serializers.SerializerMethodField()

    class Meta:
        model = Profile
        fields = ["id", "identifiers", "traits", "computed", "event_count", "event_counts", "first_seen",
                  "last_seen", "created_at", "updated_at", "merges"]

    # The view passes the merge records in context so that the read stays in the selector.
    @extend_schema_field(MergeRecordSerializer(many=True))
    def get_merges(self, profile) -> list[dict]:
        context = {**self.context, "known": known_values(profile.identifiers.all())} if self.masking() else self.context
        return MergeRecordSerializer(self.context.get("merges", []), many=True, context=context).data


class EventListSerializer(serializers.ListSerializer):
    def to_representation(self, data):
        events = list(data.all() if hasattr(data, "all") else data)
        if self.context.get("mask"):
            # The known identifiers of every profile on the page, in one query.
            self.context["known_by_profile"] = personal_identifiers(e.profile_id for e in events)
        return super().to_representation(events)


class EventSerializer(MaskingMixin, serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = ["id", "type", "event", "message_id", "user_id", "anonymous_id", "timestamp", "received_at",
                  "payload"]
        list_serializer_class = EventListSerializer

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if self.masking():
            by_profile = self.context.get("known_by_profile")
            if by_profile is None:
                by_profile = personal_identifiers([instance.profile_id])
            known = by_profile.get(instance.profile_id, NOTHING_KNOWN)
            data["payload"] = mask_payload(data["payload"], known)
            data["user_id"] = mask_identifier("user_id", data["user_id"], known)
            data["anonymous_id"] = mask_identifier("anonymous_id", data["anonymous_id"], known)
        return data


class ProfileListQuerySerializer(serializers.Serializer):
    q = serializers.CharField(required=False, allow_blank=True, validators=[NO_NUL],
                              help_text="An identifier value (emails and phones normalised) or any trait value.")
    identifier_type = serializers.CharField(required=False, allow_blank=True, validators=[NO_NUL])
    identifier = serializers.CharField(required=False, allow_blank=True, validators=[NO_NUL])
    trait = serializers.CharField(required=False, allow_blank=True, help_text="A trait key the profile must have.")
    trait_value = serializers.CharField(required=False, allow_blank=True, validators=[NO_NUL],
                                        help_text="With trait: the value, compared as text.")


class LookupQuerySerializer(serializers.Serializer):
    type = serializers.CharField(validators=[NOT_BLANK],
        help_text="Identifier type: user_id, anonymous_id, email, phone or an external id type.")
    value = serializers.CharField(validators=[NOT_BLANK])
