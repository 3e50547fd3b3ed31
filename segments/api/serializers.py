"""Segments API bodies: a definition is checked by the rule language (segments.rules), not here, so the error
names the JSON path inside it."""
from rest_framework import serializers

from profiles.common.fields import NOT_BLANK
from segments.models import Destination, Segment, SegmentMembership, SegmentSize


class SegmentSerializer(serializers.ModelSerializer):
    key = serializers.SlugField(max_length=100, help_text="Letters, digits, - and _; unique, used by other "
                                "segments' definitions ({\"segment\": key}).")
    name = serializers.CharField(max_length=200, validators=[NOT_BLANK])
    description = serializers.CharField(required=False, allow_blank=True, default="")
    definition = serializers.JSONField(required=False, help_text="One node of the rule language (see the README); "
                                       "omitted or {} for a static segment.")
    destinations = serializers.PrimaryKeyRelatedField(many=True, required=False, queryset=Destination.objects.all(),
                                                      help_text="Destinations that receive enter and exit events.")

    class Meta:
        model = Segment
        fields = ["id", "key", "name", "description", "mode", "definition", "destinations", "status", "size",
                  "last_computed_at", "last_error", "created_at", "updated_at"]
        read_only_fields = ["status", "size", "last_computed_at", "last_error", "created_at", "updated_at"]


class SegmentUpdateSerializer(SegmentSerializer):
    class Meta(SegmentSerializer.Meta):
        read_only_fields = [*SegmentSerializer.Meta.read_only_fields, "key"]


class PreviewRequestSerializer(serializers.Serializer):
    definition = serializers.JSONField()


class PreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    sample = serializers.ListField(child=serializers.IntegerField(), help_text="Up to 20 profile ids, lowest first.")
    estimated = serializers.BooleanField(help_text="True past 200,000 profiles: the count is estimated from a random "
                                                   "sample of 20,000 profiles.")
    margin = serializers.IntegerField(help_text="Half-width of the estimate's 95% interval (0 when exact).")


class MemberSerializer(serializers.ModelSerializer):
    class Meta:
        model = SegmentMembership
        fields = ["profile_id", "entered_at"]


class SegmentReasonSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Where the condition is in the definition.")
    condition = serializers.CharField()
    value = serializers.JSONField(help_text="The person's own value when they entered.")
    held = serializers.BooleanField()


class ProfileSegmentSerializer(serializers.ModelSerializer):
    segment_id = serializers.IntegerField()
    key = serializers.CharField(source="segment.key")
    name = serializers.CharField(source="segment.name")
    reasons = SegmentReasonSerializer(many=True)

    class Meta:
        model = SegmentMembership
        fields = ["segment_id", "key", "name", "entered_at", "exited_at", "reasons"]


class SizePointSerializer(serializers.ModelSerializer):
    class Meta:
        model = SegmentSize
        fields = ["at", "size", "entered", "exited"]


class StaticIdentifierSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=32, validators=[NOT_BLANK], help_text="email, phone, user_id, ...")
    value = serializers.CharField(max_length=512, validators=[NOT_BLANK])


class StaticMembersSerializer(serializers.Serializer):
    identifiers = StaticIdentifierSerializer(many=True, min_length=1, max_length=100_000)
    remove = serializers.BooleanField(default=False, help_text="Remove these identifiers instead of adding them.")

    def validate_identifiers(self, value):
        return [(item["type"], item["value"]) for item in value]
