from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"

    def ready(self):
        from consent import tasks  # noqa: F401  (registers the app's tasks in every process, web included)
        from consent.handlers import register_handlers

        register_handlers()
