"""Campaigns: placements, campaigns, the decision API, exposures, conversions and their statistics."""
from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"

    def ready(self):
        from campaigns import tasks  # noqa: F401  (registers the app's tasks in every process, web included)
        from campaigns.models import Conversion, Exposure
        from campaigns.services.erasure import campaign_data_erase, campaign_data_export
        from consent.registry import Handler, register

        register(Handler(
            "campaigns", (Exposure, Conversion),
            lambda profile_ids, limit: campaign_data_erase(profile_ids=profile_ids, limit=limit),
            lambda profile_ids: campaign_data_export(profile_ids=profile_ids)))
