"""Health for operators: /healthz says the process is alive, /readyz whether the whole platform can do its work.

/readyz answers 503 when the database or the broker does not answer, or when a queue the project uses has no
worker consuming it (a deletion request would then wait forever). Point a load balancer's check at /healthz and
alerting at /readyz: a web process still accepts events while the workers are down.
"""
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from cdp.selectors import ingestion_lag
from profiles.common.workers import broker_status


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


@never_cache
@require_GET
def readyz(request):
    database = _database()
    broker = broker_status(fresh=True)
    queues = {q.name: {"consumed": q.consumed, "workers": len(q.workers), "in_process": q.in_process,
                       "length": q.length} for q in broker.queues}
    body = {"database": database, "broker": {"ok": broker.reachable, "error": broker.error}, "queues": queues}
    if database["ok"]:
        lag = ingestion_lag()
        body["pipeline"] = {"pending_events": lag.pending, "lag_seconds": lag.oldest_age_seconds}
    ready = database["ok"] and broker.reachable and all(q["consumed"] for q in queues.values())
    return JsonResponse({"ready": ready, **body}, status=200 if ready else 503)
