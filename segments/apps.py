from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "segments"

    def ready(self):
        from consent.registry import Handler, register
        from segments import tasks  # noqa: F401  (registers the app's tasks in every process, web included)
        from segments.models import SegmentMembership, StaticMember
        from segments.services.erasure import segment_data_erase, segment_data_export

        register(Handler(
            "segments", (SegmentMembership, StaticMember),
            lambda profile_ids, limit: segment_data_erase(profile_ids=profile_ids, limit=limit),
            lambda profile_ids: segment_data_export(profile_ids=profile_ids)))
        from segments.models import Delivery, DeliveryAttempt
        from segments.services.deliveries import delivery_data_erase, delivery_data_export

        # Delivery bodies are snapshots of the person (identifiers, traits); attempts go with their delivery.
        register(Handler(
            "segment_deliveries", (Delivery, DeliveryAttempt),
            lambda profile_ids, limit: delivery_data_erase(profile_ids=profile_ids, limit=limit),
            lambda profile_ids: delivery_data_export(profile_ids=profile_ids)))
        from segments.models import Recommendations
        from segments.services.recommendations import recommendations_erase, recommendations_export

        # Top lists are made from the person's behaviour (and name what they bought).
        register(Handler(
            "segment_recommendations", (Recommendations,),
            lambda profile_ids, limit: recommendations_erase(profile_ids=profile_ids, limit=limit),
            lambda profile_ids: recommendations_export(profile_ids=profile_ids)))
