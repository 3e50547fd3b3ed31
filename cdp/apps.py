from django.apps import AppConfig


class CdpConfig(AppConfig):
    name = "cdp"

    def ready(self):
        import orjson
        from psycopg.types.json import set_json_loads

        # jsonb payloads are the bulk of what the pipeline reads; orjson parses them several times faster.
        set_json_loads(orjson.loads)
        # Registers the pipeline task in every process (web included), so lower apps can queue it by name.
        from cdp import tasks  # noqa: F401
