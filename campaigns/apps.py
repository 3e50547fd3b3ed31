"""Campaigns: placements, campaigns, the decision API, exposures, conversions and their statistics."""
from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"

    def ready(self):
        from campaigns import tasks  # noqa: F401  (registers the app's tasks in every process, web included)
        from campaigns.models import Conversion, Exposure, TriggeredSend
        from campaigns.services.erasure import campaign_data_erase, campaign_data_export
        from campaigns.services.triggers import triggers_on_entries
        from consent.registry import Handler, register
        from segments.entries import on_segment_entries

        on_segment_entries(triggers_on_entries)
        register(Handler(
            "campaigns", (Exposure, Conversion, TriggeredSend),
            lambda profile_ids, limit: campaign_data_erase(profile_ids=profile_ids, limit=limit),
            lambda profile_ids: campaign_data_export(profile_ids=profile_ids)))
