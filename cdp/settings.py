"""Settings for the customer data platform, read from the environment (see .env.example)."""
import sys
from pathlib import Path
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-development-key-only-for-debug"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

# Without DATABASE_URL the product uses its embedded PostgreSQL under var/postgres (cdp/embedded.py), started by
# `make run`; every other process (manage.py in another shell, the worker) finds it through its postmaster.pid.
# Without REDIS_URL, tasks run in-process. Tests, CI and production set both.
EMBEDDED = "DATABASE_URL" not in env
(BASE_DIR / "var").mkdir(exist_ok=True)
if EMBEDDED:
    from cdp.embedded import DATA_DIR, database_url

    _embedded_url = database_url()
    if _embedded_url is None:
        raise ImproperlyConfigured(f"The embedded PostgreSQL under {DATA_DIR} is not running: start it with "
                                   "`make run` (or `python -m cdp.embedded start`), or set DATABASE_URL.")
    DATABASES = {"default": env.db_url_config(_embedded_url)}
else:
    DATABASES = {"default": env.db("DATABASE_URL")}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must name a PostgreSQL database (postgres://user@host:port/name); "
                               f"this product speaks PostgreSQL only, not {DATABASES['default']['ENGINE']}.")
# A Unix socket directory travels percent-encoded in a URL (postgres://user@%2Fpath%2Fto%2Fdir:5432/name).
DATABASES["default"]["HOST"] = unquote(DATABASES["default"]["HOST"] or "")
# Persistent connections: opening a PostgreSQL connection costs more than accepting a batch of 100.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Server-side prepared statements for the few statements on a request's critical path (profiles.common.prepared;
# Django's own queries bind on the client and are never prepared). Off for a pooler that cannot keep them across
# transactions (PgBouncer in transaction mode before 1.21).
if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["prepare_threshold"] = 5
    # Those statements look up a handful of rows by id: one generic plan serves every set of parameters, and
    # planning each execution afresh (PostgreSQL's choice for the first five, and often after) costs more than
    # running it. Only server-side prepared statements have parameters to plan for, so nothing else changes.
    _options["options"] = (_options.get("options", "") + " -c plan_cache_mode=force_generic_plan").strip()
REDIS_URL = env.str("REDIS_URL", default="")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI served from our own static files at a pinned version: /api/docs/ works offline.
    "drf_spectacular_sidecar",
    "import_export",
    "profiles",
    "consent",
    "segments",
    "campaigns",
    "cdp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from the web process itself (after `collectstatic`), so production needs no separate server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "cdp.timezones.TimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "cdp.middleware.ApiErrorsAsJson",
]

ROOT_URLCONF = "cdp.urls"
WSGI_APPLICATION = "cdp.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
# Each role lands on its own screen: privacy officers on the privacy dashboard, everyone else on the dashboard.
LOGIN_REDIRECT_URL = "landing"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise also serves straight from the apps' static folders, so `make run` (DEBUG off) needs no collectstatic.
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Segment's documented limits: 32 KB per message, 500 KB per batch request.
COLLECT_MAX_MESSAGE_BYTES = 32 * 1024
COLLECT_MAX_BATCH_BYTES = 500 * 1024
# A request body is never read past this, so a gzip bomb cannot exhaust memory.
DATA_UPLOAD_MAX_MEMORY_SIZE = COLLECT_MAX_BATCH_BYTES + 1024
PIPELINE_BATCH_SIZE = env.int("PIPELINE_BATCH_SIZE", default=2000)
# How long a (source, messageId) is remembered after it was accepted, so that a replay is a duplicate (a key is
# also kept while its message is still queued). Segment documents at least 24 hours; a week also covers clients
# that keep events while offline and send them again later.
MESSAGE_DEDUPE_DAYS = env.int("MESSAGE_DEDUPE_DAYS", default=7)
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="US")
# The privacy regime of a profile whose country names none (consent.regimes): GDPR's opt-in is the safe default.
CONSENT_DEFAULT_REGIME = env.str("CONSENT_DEFAULT_REGIME", default="gdpr")
# Keys the suppression list's hashes of erased identifiers. Changing it forgets who was erased: set it once.
SUPPRESSION_KEY = env.str("SUPPRESSION_KEY", default=SECRET_KEY)
# Where access and portability exports are written, and how long their one-time link stays valid.
PRIVACY_EXPORT_DIR = env.path("PRIVACY_EXPORT_DIR", default=BASE_DIR / "var" / "exports")
PRIVACY_EXPORT_TTL_HOURS = env.int("PRIVACY_EXPORT_TTL_HOURS", default=72)
# Realtime segments are swept this often (members leave when a window passes without a new event); batch segments
# are recomputed this often. Every sweep and recompute adds a point to the segment's size history.
SEGMENT_SWEEP_SECONDS = env.int("SEGMENT_SWEEP_SECONDS", default=300)
SEGMENT_BATCH_SECONDS = env.int("SEGMENT_BATCH_SECONDS", default=3600)
# Recommendations learn from these track events (the Segment e-commerce spec's, which name a product_id, or a
# products list for orders), each worth its weight; RECOMMENDATION_EVENTS='{"Product Viewed": 1, ...}' replaces them.
RECOMMENDATION_EVENTS = env.json("RECOMMENDATION_EVENTS", default={
    "Product Viewed": 1.0, "Product Clicked": 1.0, "Product Added": 3.0, "Product Added to Wishlist": 2.0,
    "Order Completed": 5.0})
# Interactions older than this are not learned from (tastes change).
RECOMMENDATION_DAYS = env.int("RECOMMENDATION_DAYS", default=180)
# Segment webhooks: tries per delivery before it becomes a dead letter, and the wait after the first failed try
# (doubled after each one, capped at an hour): 8 tries span about an hour at the default.
DELIVERY_MAX_ATTEMPTS = env.int("DELIVERY_MAX_ATTEMPTS", default=8)
DELIVERY_RETRY_BASE_SECONDS = env.int("DELIVERY_RETRY_BASE_SECONDS", default=30)
# Webhooks (segments' and triggered campaigns') go to public addresses only: a destination on the loopback
# interface, a private network or a link-local address (cloud metadata) is refused on save and on connect. On for
# a receiver on your own machine or network (development, tests).
DESTINATIONS_ALLOW_PRIVATE_NETWORKS = env.bool("DESTINATIONS_ALLOW_PRIVATE_NETWORKS", default=False)
# Triggered campaigns keep quiet hours in the person's `timezone` trait, else in this IANA time zone.
CAMPAIGNS_TIME_ZONE = env.str("CAMPAIGNS_TIME_ZONE", default="UTC")
try:
    ZoneInfo(CAMPAIGNS_TIME_ZONE)
except (ZoneInfoNotFoundError, ValueError) as exc:
    raise ImproperlyConfigured(f"CAMPAIGNS_TIME_ZONE must be an IANA time zone (Europe/Berlin), not "
                               f"{CAMPAIGNS_TIME_ZONE!r}") from exc
if CONSENT_DEFAULT_REGIME not in ("gdpr", "ccpa"):
    raise ImproperlyConfigured(f"CONSENT_DEFAULT_REGIME must be gdpr or ccpa, not {CONSENT_DEFAULT_REGIME!r}")
if DELIVERY_MAX_ATTEMPTS < 1 or DELIVERY_RETRY_BASE_SECONDS < 1:
    raise ImproperlyConfigured("DELIVERY_MAX_ATTEMPTS and DELIVERY_RETRY_BASE_SECONDS must be at least 1, not "
                               f"{DELIVERY_MAX_ATTEMPTS} and {DELIVERY_RETRY_BASE_SECONDS}")
if MESSAGE_DEDUPE_DAYS < 1:
    raise ImproperlyConfigured(f"MESSAGE_DEDUPE_DAYS must be at least 1, not {MESSAGE_DEDUPE_DAYS}")

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "ingest"
# Every queue the project routes to: a plain `celery -A cdp worker` consumes all of them (a worker started with
# -Q consumes only those named, and the others' tasks wait).
CELERY_TASK_QUEUES = [Queue("ingest"), Queue("privacy"), Queue("segments"), Queue("webhooks"), Queue("campaigns"),
                      Queue("learning")]
CELERY_TASK_ROUTES = {
    "profiles.*": {"queue": "ingest"},
    "cdp.*": {"queue": "ingest"},
    "consent.*": {"queue": "privacy"},
    # Deliveries wait on other people's servers: their own queue, so a slow receiver never delays a recompute.
    "segments.deliver*": {"queue": "webhooks"},
    "campaigns.send_triggered": {"queue": "webhooks"},
    # Training takes a core for a minute or more: its own queue, which a bigger machine can consume alone.
    "segments.learn_*": {"queue": "learning"},
    "segments.*": {"queue": "segments"},
    "campaigns.*": {"queue": "campaigns"},
}
CELERY_BEAT_SCHEDULE = {
    # Safety net: picks up events left behind by a worker that died mid-batch.
    "pipeline-sweep": {"task": "cdp.process_pending", "schedule": 10.0},
    "enrichment": {"task": "profiles.enrich_all", "schedule": 15 * 60.0},
    "event-partitions": {"task": "profiles.maintain_event_partitions", "schedule": 6 * 3600.0},
    # Often, so each run forgets a few minutes' worth of keys in short chunks rather than a day's at once.
    "message-keys": {"task": "profiles.prune_message_keys", "schedule": 600.0},
    "privacy-exports": {"task": "consent.purge_exports", "schedule": 3600.0},
    "retention": {"task": "consent.purge_retention", "schedule": 24 * 3600.0},
    "privacy-resume": {"task": "consent.resume_requests", "schedule": 300.0},
    "segments-due": {"task": "segments.recompute_due", "schedule": 60.0},
    # Webhook retries live in the database, not in Celery countdowns, so they survive worker restarts. A run
    # queued behind a backlog expires rather than piling up: the next one does the same work.
    "deliveries-due": {"task": "segments.deliver_due", "schedule": 30.0, "options": {"expires": 30}},
    # Decisions kick the recorder themselves; this only catches a kick lost to a restart.
    "exposures": {"task": "campaigns.record_exposures", "schedule": 10.0, "options": {"expires": 10}},
    # Triggered sends after their delay, quiet hours or backoff; entries without a delay are sent at once.
    "triggered-sends": {"task": "campaigns.send_triggered", "schedule": 30.0, "options": {"expires": 30}},
    # Models whose retraining is due (each model says how often), and the recommendations' top lists.
    "models-due": {"task": "segments.learn_models_due", "schedule": 3600.0, "options": {"expires": 3600}},
    # Scores move with the features (recency above all) between retrainings.
    "model-scores": {"task": "segments.learn_scores", "schedule": 24 * 3600.0, "options": {"expires": 3600}},
    "recommendations": {"task": "segments.learn_recommendations", "schedule": 6 * 3600.0,
                        "options": {"expires": 3600}},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "profiles.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["profiles.common.permissions.RoleModelPermissions"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
    "EXCEPTION_HANDLER": "profiles.common.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "profiles.common.pagination.DefaultPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Customer data platform API",
    "DESCRIPTION": "Profiles, identities and events. The collection API (/v1/*) follows the Segment Spec.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No online validator badge: Swagger UI would send the schema's address to validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # The collection API is plain Django views (the hot path); this hook adds it to the schema.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "profiles.api.collect_schema.add_collection_api",
                             "campaigns.api.decide_schema.add_decide_api"],
    # Two models have a status field with different choices: each enum gets its own name.
    "ENUM_NAME_OVERRIDES": {"SegmentStatusEnum": "segments.models.Segment.Status",
                            "DeliveryStatusEnum": "segments.models.Delivery.Status",
                            "CampaignStatusEnum": "campaigns.models.Campaign.Status"},
    "TAGS": [{"name": "collection", "description": "The Segment-compatible collection API."},
             {"name": "profiles"}, {"name": "consent"}, {"name": "privacy requests"},
             {"name": "segments"},
             {"name": "destinations", "description": "Webhook destinations of segment enter and exit events, "
                                                     "and their deliveries."},
             {"name": "campaigns", "description": "Placements, campaigns, their results, and the programme's "
                                                  "settings; decisions are POST /v1/decide."}],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler", "stream": sys.stderr}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
}
