from django.apps import AppConfig


class CdpConfig(AppConfig):
    name = "cdp"

    def ready(self):
        # Registers the pipeline task in every process (web included), so lower apps can queue it by name.
        from cdp import tasks  # noqa: F401
