"""Campaigns API bodies: targeting, variants, caps and goals are checked by campaigns.rules (the error names the
JSON path inside them), not here."""
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from campaigns.models import Campaign, Placement, ProgrammeSettings
from profiles.common.fields import NOT_BLANK


class PlacementSerializer(serializers.ModelSerializer):
    key = serializers.SlugField(max_length=100, help_text="Letters, digits, - and _; what /v1/decide names.",
                                validators=[UniqueValidator(queryset=Placement.objects.all())])
    default_content = serializers.JSONField(required=False, help_text="A JSON object: what a person gets here when "
                                            "no campaign applies, and what control and holdout people get.")

    class Meta:
        model = Placement
        fields = ["id", "key", "name", "channel", "default_content", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


class CampaignSerializer(serializers.ModelSerializer):
    key = serializers.SlugField(max_length=100, validators=[UniqueValidator(queryset=Campaign.objects.all())])
    name = serializers.CharField(max_length=200, validators=[NOT_BLANK])
    placements = serializers.SlugRelatedField(many=True, slug_field="key", queryset=Placement.objects.all(),
                                              help_text="Keys of the placements it runs in.")
    exclusive_with = serializers.SlugRelatedField(many=True, slug_field="key", queryset=Campaign.objects.all(),
                                                  required=False, help_text="Keys of campaigns it never runs beside "
                                                  "for one person.")
    targeting = serializers.JSONField(required=False, allow_null=True, help_text="A node of the segments rule "
                                      "language, which may also test the request: {\"context\": \"page.path\", "
                                      "\"op\": ..., \"value\": ...}; null for everyone.")
    variants = serializers.JSONField(help_text='[{"key": "A", "weight": 50, "content": {...}}, ...], weights adding '
                                     "up to 100.")
    caps = serializers.JSONField(required=False, help_text='[{"count": 3, "per": "day"}], per hour, day, week or '
                                 "lifetime, per person.")
    goal = serializers.JSONField(required=False, allow_null=True, help_text='{"event": "Order Completed", "where": '
                                 '[...], "within": "7d"}: what counts as a conversion after an exposure.')
    trigger = serializers.JSONField(required=False, allow_null=True, help_text='{"segment": "cart-abandoners", '
                                    '"placement": "email_cart", "destination": 3, "payload": {"to": "{{ profile.email '
                                    '}}", ...}, "delay": "1h", "quiet_hours": {"start": "21:00", "end": "08:00"}}: '
                                    "on entering the segment, a person's content is sent to the destination (a "
                                    "webhook). A triggered campaign answers no decisions; null for none.")
    control_share = serializers.FloatField(required=False, min_value=0, max_value=1, help_text="Share (0 to 1) of "
                                           "eligible people who get the placement's default content, counted as "
                                           "control.")

    class Meta:
        model = Campaign
        fields = ["id", "key", "name", "description", "status", "starts_at", "ends_at", "placements", "targeting",
                  "priority", "purpose", "caps", "variants", "control_share", "allocation", "goal", "exclusive_with",
                  "trigger", "created_at", "updated_at"]
        read_only_fields = ["status", "created_at", "updated_at"]


class CampaignUpdateSerializer(CampaignSerializer):
    class Meta(CampaignSerializer.Meta):
        read_only_fields = [*CampaignSerializer.Meta.read_only_fields, "key"]


class ProgrammeSettingsSerializer(serializers.ModelSerializer):
    holdout_share = serializers.FloatField(required=False, min_value=0, max_value=1, help_text="Share (0 to 1) of "
                                           "all people, by a stable hash, who get no campaign at all.")
    channel_caps = serializers.JSONField(required=False, help_text='{"email": {"count": 3, "per": "week"}}: no person '
                                         "gets more on a channel from all campaigns together.")

    class Meta:
        model = ProgrammeSettings
        fields = ["holdout_share", "channel_caps", "updated_at"]
        read_only_fields = ["updated_at"]


class ArmResultSerializer(serializers.Serializer):
    variant = serializers.CharField(help_text='A variant\'s key, or "control".')
    exposed = serializers.IntegerField(help_text="People shown it.")
    exposures = serializers.IntegerField(help_text="Times shown.")
    conversions = serializers.IntegerField(help_text="People who converted after an exposure, within the goal's "
                                           "window.")
    conversion_rate = serializers.FloatField(allow_null=True)
    uplift = serializers.FloatField(allow_null=True, help_text="Rate minus the baseline's (absolute).")
    uplift_relative = serializers.FloatField(allow_null=True, help_text="Rate over the baseline's, minus 1.")
    uplift_interval = serializers.ListField(child=serializers.FloatField(), allow_null=True,
                                            help_text="95% interval of the uplift.")
    p_value = serializers.FloatField(allow_null=True, help_text="Two-proportion z-test against the baseline.")
    probability_best = serializers.FloatField(allow_null=True, help_text="Posterior probability of the highest rate.")


class SampleSizeSerializer(serializers.Serializer):
    baseline_rate = serializers.FloatField(allow_null=True)
    minimum_detectable_effect = serializers.FloatField()
    per_arm = serializers.IntegerField(allow_null=True, help_text="People per arm to detect that effect at 5% "
                                       "significance with 80% power.")


class ResultsSerializer(serializers.Serializer):
    campaign = serializers.DictField()
    baseline = serializers.CharField(help_text='"control", or the first variant when there is no control.')
    variants = ArmResultSerializer(many=True)
    sample_size = SampleSizeSerializer()
    verdict = serializers.ChoiceField(choices=["keep running", "winner", "no difference"])
