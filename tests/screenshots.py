"""Screenshots of the main screens at desktop (1366x900) and phone (390x844) width, into docs/screens/.

Run by hand when a screen changes, not by the test suite:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cdp_screenshots SECRET_KEY=any \\
        .venv/bin/python tests/screenshots.py

It fills the database with the demo data when it is empty (seed_demo --if-empty, the demo logins, one privacy
request), serves the app with gunicorn on a free local port, and drives Debian's chromium, offline.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screens"
SIZES = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}


def _prepare() -> dict:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from campaigns.models import Campaign
    from cdp.management.commands.seed_demo import demo_campaigns, demo_learning
    from consent.models import PrivacyRequest
    from consent.services.privacy import privacy_request_create
    from profiles.models import Profile
    from segments.models import ClusteringRun, PredictiveModel, Segment, SegmentMembership
    from segments.services.clustering import clustering_queue, clustering_run

    call_command("migrate", verbosity=0)
    call_command("seed_demo", profiles=300, if_empty=True)
    call_command("create_demo_users")
    demo_campaigns(seed=None, now=timezone.now())  # a database seeded before campaigns existed gets them now
    if not PrivacyRequest.objects.exists():
        privacy_request_create(kind="access", regime="gdpr",
                               identifiers=[{"type": "email", "value": "someone@example.com"}])
    # The profile shown is in a segment, so its segments card has reasons to show.
    member = SegmentMembership.objects.filter(exited_at__isnull=True, segment__key="window-shoppers").order_by(
        "profile_id").first()
    profile = (Profile.objects.filter(pk=member.profile_id).first() if member else None) or (
        Profile.objects.filter(merged_into__isnull=True).order_by("-event_count").first())
    # What is learned: a clustering of the demo's customers, and the churn model seed_demo trains (a database
    # seeded before it existed gets both now).
    if not ClusteringRun.objects.filter(status=ClusteringRun.Status.READY).exists():
        run = clustering_queue(features=["recency_days", "frequency_orders", "monetary_value", "engagement_score"],
                               k_min=2, k_max=6)
        clustering_run(run_id=run.pk)
    if not PredictiveModel.objects.filter(key="churn_risk").exists():
        demo_learning()
    return {"profile": profile.pk, "request": PrivacyRequest.objects.order_by("id").first().pk,
            "clustering": ClusteringRun.objects.filter(status=ClusteringRun.Status.READY).order_by("-id").first().pk,
            "segment": Segment.objects.get(key="cart-abandoners").pk,
            "edited": Segment.objects.get(key="window-shoppers").pk,
            "campaign": Campaign.objects.get(key="spring-trails").pk,
            "triggered": Campaign.objects.get(key="cart-reminder").pk}


def _serve() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "cdp.wsgi", "-w", "2", "-b",
                               f"127.0.0.1:{port}", "--log-level", "warning"], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            return server, url
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    server.terminate()
    raise SystemExit("gunicorn did not start")


def _shoot(url: str, ids: dict) -> list[Path]:
    from playwright.sync_api import sync_playwright

    screens = [("login", "/accounts/login/", None), ("dashboard", "/?days=90", "marketer"),
               ("profiles", "/profiles/?sort=-value", "marketer"),
               ("profile", f"/profiles/{ids['profile']}/", "marketer"),
               ("privacy-queue", "/privacy/", "privacy"), ("privacy-request", f"/privacy/{ids['request']}/", "privacy"),
               ("segments", "/segments/", "marketer"), ("segment", f"/segments/{ids['segment']}/", "marketer"),
               ("segment-builder", f"/segments/{ids['edited']}/edit/", "marketer"),
               ("campaigns", "/campaigns/", "marketer"), ("campaign", f"/campaigns/{ids['campaign']}/", "marketer"),
               ("campaign-editor", f"/campaigns/{ids['triggered']}/edit/", "marketer"),
               ("clustering", f"/segments/clustering/{ids['clustering']}/", "marketer"),
               ("models", "/segments/models/", "marketer"), ("model", "/segments/models/churn_risk/", "marketer")]
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        for size, viewport in SIZES.items():
            for user in (None, "marketer", "privacy"):
                context = browser.new_context(viewport=viewport, device_scale_factor=1)
                page = context.new_page()
                page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url)
                           else route.abort())
                if user:
                    page.goto(url + "/accounts/login/")
                    page.fill("#id_username", user)
                    page.fill("#id_password", f"{user}-demo")
                    page.click("button[type=submit]")
                    page.wait_for_load_state("networkidle")
                for name, path, who in screens:
                    if who != user:
                        continue
                    page.goto(url + path)
                    page.wait_for_load_state("networkidle")
                    target = OUT / f"{name}-{size}.png"
                    page.screenshot(path=str(target))
                    written.append(target)
                context.close()
        browser.close()
    return written


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    ids = _prepare()
    server, url = _serve()
    try:
        for path in _shoot(url, ids):
            print(path.relative_to(ROOT))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
