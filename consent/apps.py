from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"

    def ready(self):
        from consent.handlers import register_handlers

        register_handlers()
