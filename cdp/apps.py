from django.apps import AppConfig


class CdpConfig(AppConfig):
    name = "cdp"

    def ready(self):
        from cdp.tasks import pipeline_kick
        from profiles.services.ingest import events_queued_subscribe

        # Profiles accepts events but sits below the pipeline: it calls what the pipeline registers here.
        events_queued_subscribe(pipeline_kick)
