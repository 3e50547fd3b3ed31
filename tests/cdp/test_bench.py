"""`manage.py bench ingest` end to end: a real gunicorn, a client process, a worker process, the COPY limit."""
import subprocess
import sys
from pathlib import Path

import orjson

from profiles.models import Event, Identifier, MessageKey, PendingEvent, Profile, Source

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("accept_events_per_s", "process_events_per_s", "copy_limit_events_per_s", "worker_peak_rss_mb",
        "accept_ratio", "process_ratio", "events")


def test_bench_ingest_reports_positive_rates_and_cleans_up(subprocess_env):
    run = subprocess.run([sys.executable, "manage.py", "bench", "ingest", "--events", "2000", "--json"],
                         cwd=ROOT, env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = orjson.loads(run.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert isinstance(result[key], (int, float)) and result[key] > 0, (key, result)
    assert result["events"] == 2000
    # The worker processed exactly the bench's events (nothing else was pending), then cleanup removed them.
    assert result["processed_total"] == 2000
    assert "cleaned up: 2000 events, 200 profiles" in run.stdout
    assert not Source.objects.filter(name__startswith="bench-").exists()
    assert Event.objects.count() == 0 and PendingEvent.objects.count() == 0 and MessageKey.objects.count() == 0
    assert Profile.objects.count() == 0 and Identifier.objects.count() == 0


def test_bench_ingest_keep_leaves_processed_events(subprocess_env):
    run = subprocess.run([sys.executable, "manage.py", "bench", "ingest", "--events", "200", "--keep"],
                         cwd=ROOT, env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    source = Source.objects.get(name__startswith="bench-")
    events = Event.objects.filter(source=source)
    assert events.count() == 200
    assert not PendingEvent.objects.filter(source=source).exists()
    assert Profile.objects.filter(merged_into__isnull=True).count() == 20


def test_bench_privacy_erases_the_subject_only_and_cleans_up(subprocess_env):
    from consent.models import PrivacyRequest

    run = subprocess.run([sys.executable, "manage.py", "bench", "privacy", "--events", "3000", "--subject-events",
                          "1000", "--profiles", "50", "--json"], cwd=ROOT, env=subprocess_env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = orjson.loads(run.stdout.strip().splitlines()[-1])
    assert result["erase_s"] > 0 and result["consent_reads_per_s"] > 0 and result["ingest_batches_during_erase"] > 0
    assert result["erased"]["events"] == 1000 and result["erased"]["profiles"] == 1
    assert result["rows_erased"] == sum(result["erased"].values())
    assert PrivacyRequest.objects.get().status == "completed"
    assert not Source.objects.filter(name__startswith="bench-").exists()
    assert Event.objects.count() == 0 and Profile.objects.count() == 0
