from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"

    def ready(self):
        from consent import tasks  # noqa: F401  (registers the app's tasks in every process, web included)
        from consent.handlers import register_handlers
        from consent.regimes import regime_for
        from profiles.services.identity import profile_regime_rule_register

        register_handlers()
        # "" where the traits name no regime: CONSENT_DEFAULT_REGIME applies when read, so changing it needs no rewrite.
        profile_regime_rule_register(lambda traits: regime_for(traits, default=""))
