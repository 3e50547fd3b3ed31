"""Demo data: synthetic web-shop traffic sent through the collection path, then resolved and enriched.

The messages go through events_accept and the pipeline exactly as the collection API's would, so the
demo shows what identity resolution really does (anonymous visits, identifies, two-device merges).
"""
from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.selectors import snapshot_forget
from campaigns.services import definitions
from campaigns.services.decisions import decide
from campaigns.services.exposures import exposures_record_queued
from cdp.pipeline import pipeline_drain
from consent.models import ConsentSource, PrivacyRequest
from consent.services import privacy
from consent.services.ledger import ConsentChoice, consent_record
from profiles.models import Event, Identifier, MergeRecord, PendingEvent, Profile
from profiles.services.enrichment import profiles_enrich
from profiles.services.ingest import events_accept
from profiles.services.sources import source_get_or_create
from segments.models import PredictiveModel, Segment
from segments.services.definitions import segment_create
from segments.services.destinations import destination_create
from segments.services.membership import segment_recompute
from segments.services.prediction import model_create, model_train
from segments.services.recommendations import recommendations_refresh

SOURCE_NAME = "Demo web shop"
# The collection API's batch endpoint takes 500 KB; 500 demo messages stay well under it.
CHUNK = 500
DAYS = 90
TWO_DEVICE_SHARE = 0.10
BUYER_SHARE = 0.30
ANONYMOUS_ONLY_SHARE = 0.15

FIRST = ["Ava", "Liam", "Noah", "Emma", "Olivia", "Mia", "Lucas", "Amelia", "Ethan", "Sofia", "Mateo", "Chloe",
         "Leo", "Zoe", "Isaac", "Nora", "Hugo", "Maya", "Owen", "Lena", "Ravi", "Aiko", "Omar", "Ingrid", "Kofi"]
LAST = ["Smith", "Garcia", "Chen", "Müller", "Okafor", "Rossi", "Nguyen", "Kowalski", "Patel", "Silva", "Dubois",
        "Jensen", "Tanaka", "Haddad", "Novak", "Reyes", "Larsen", "Moreau", "Ibrahim", "Costa"]
DOMAINS = ["example.com", "example.org", "example.net"]
AREA_CODES = ["212", "312", "415", "503", "617", "702", "808", "917"]
PRODUCTS = [
    ("sku-1001", "Trail Running Shoes", "Footwear", 119.0), ("sku-1002", "Merino Wool Socks", "Apparel", 18.5),
    ("sku-1003", "Rain Shell Jacket", "Apparel", 189.0), ("sku-1004", "Insulated Bottle 750 ml", "Gear", 34.0),
    ("sku-1005", "Daypack 24 L", "Gear", 89.0), ("sku-1006", "Headlamp 400 lm", "Gear", 45.0),
    ("sku-1007", "Fleece Pullover", "Apparel", 74.0), ("sku-1008", "Camp Mug", "Gear", 16.0),
    ("sku-1009", "Hiking Boots", "Footwear", 164.0), ("sku-1010", "Sun Hat", "Apparel", 29.0),
]
PAGES = [("Home", "/"), ("Category", "/c/footwear"), ("Category", "/c/apparel"), ("Category", "/c/gear"),
         ("Search", "/search"), ("Sale", "/sale"), ("Help", "/help/shipping")]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
]


class _Generator:
    """Builds the Segment messages of N people; every random choice comes from one seeded Random."""

    def __init__(self, rng: random.Random, now: datetime):
        self.rng = rng
        self.now = now
        self.messages: list[dict] = []
        self.used_emails: set[str] = set()
        self.used_phones: set[str] = set()

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _time_after(self, start: datetime) -> datetime:
        span = max(60.0, (self.now - start).total_seconds())
        return start + timedelta(seconds=self.rng.uniform(0, span) * self.rng.random())

    def _send(self, kind: str, when: datetime, device: dict, user_id: str | None, **fields) -> None:
        # A session that starts minutes before "now" would otherwise run into the future.
        when = min(when, self.now)
        message = {"type": kind, "messageId": self._id(), "anonymousId": device["anonymous_id"],
                   "timestamp": when.isoformat().replace("+00:00", "Z"),
                   "context": {"library": {"name": "analytics.js", "version": "2.11.1"},
                               "userAgent": device["user_agent"]}, **fields}
        if user_id:
            message["userId"] = user_id
        self.messages.append(message)

    def _page(self, when, device, user_id, name=None, path=None):
        if name is None:
            name, path = self.rng.choice(PAGES)
        self._send("page", when, device, user_id, name=name,
                   properties={"path": path, "url": f"https://shop.example.com{path}", "title": f"{name} · Trailhead"})

    def _product(self, event, when, device, user_id, product):
        sku, name, category, price = product
        self._send("track", when, device, user_id, event=event,
                   properties={"product_id": sku, "name": name, "category": category, "price": price,
                               "currency": "USD"})

    def _session(self, start: datetime, device: dict, user_id: str | None) -> datetime:
        """One visit: a landing page, some browsing, maybe a cart. Returns when it ended."""
        when = start
        self._page(when, device, user_id)
        for _ in range(self.rng.randint(0, 3)):
            when += timedelta(seconds=self.rng.randint(15, 240))
            product = self.rng.choice(PRODUCTS)
            self._page(when, device, user_id, "Product", f"/p/{product[0]}")
            self._product("Product Viewed", when + timedelta(seconds=1), device, user_id, product)
            if self.rng.random() < 0.3:
                when += timedelta(seconds=self.rng.randint(5, 90))
                self._product("Product Added", when, device, user_id, product)
        return when

    def _order(self, when: datetime, device: dict, user_id: str) -> None:
        basket = self.rng.sample(PRODUCTS, self.rng.randint(1, 3))
        for product in basket:
            self._product("Product Added", when, device, user_id, product)
            when += timedelta(seconds=self.rng.randint(10, 120))
        items = [{"product_id": sku, "name": name, "price": price, "quantity": self.rng.randint(1, 2)}
                 for sku, name, _, price in basket]
        revenue = round(sum(i["price"] * i["quantity"] for i in items), 2)
        self._send("track", when, device, user_id, event="Checkout Started",
                   properties={"value": revenue, "currency": "USD"})
        self._send("track", when + timedelta(seconds=self.rng.randint(30, 300)), device, user_id,
                   event="Order Completed",
                   properties={"order_id": f"ORD-{self.rng.randint(100000, 999999)}", "revenue": revenue,
                               "currency": "USD", "products": items})

    def _person_traits(self) -> dict:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        while True:
            local = f"{first}.{last}{self.rng.randint(1, 9999)}".lower().replace("ü", "u")
            email = f"{local}@{self.rng.choice(DOMAINS)}"
            if email not in self.used_emails:
                break
        while True:
            phone = f"+1 {self.rng.choice(AREA_CODES)} 555 {self.rng.randint(100, 9999):04d}"
            if phone not in self.used_phones:
                break
        self.used_emails.add(email)
        self.used_phones.add(phone)
        return {"email": email, "name": f"{first} {last}", "first_name": first, "last_name": last, "phone": phone}

    def person(self, *, two_devices: bool, buyer: bool, identifies: bool) -> None:
        first_visit = self.now - timedelta(seconds=self.rng.uniform(3600, DAYS * 86400))
        user_id = f"u_{self.rng.getrandbits(40):010x}"
        traits = self._person_traits()
        devices = [{"anonymous_id": self._id(), "user_agent": self.rng.choice(USER_AGENTS)}
                   for _ in range(2 if two_devices else 1)]
        identified_at = None
        when = first_visit
        for index, device in enumerate(devices):
            # Each device browses anonymously first, then the person signs in on it.
            if index:
                when = self._time_after(identified_at)
            when = self._session(when, device, None)
            if not identifies:
                for _ in range(self.rng.randint(0, 2)):
                    when = self._session(self._time_after(when), device, None)
                return
            when += timedelta(seconds=self.rng.randint(20, 300))
            self._send("identify", when, device, user_id, traits=dict(traits))
            identified_at = when
        # Signed-in activity starts after the last device's sign-in, so that device's anonymous visits
        # become a profile of their own first and the identify merges it (the two-device story).
        for _ in range(self.rng.randint(0, 4)):
            self._session(self._time_after(identified_at), self.rng.choice(devices), user_id)
        if buyer:
            for _ in range(self.rng.choice((1, 1, 1, 2, 2, 3, 4))):
                self._order(self._time_after(identified_at), self.rng.choice(devices), user_id)


def demo_messages(*, people: int, seed: int | None, now: datetime) -> list[dict]:
    """The messages of `people` synthetic shoppers over the last 90 days, in timestamp order."""
    rng = random.Random(seed)
    generator = _Generator(rng, now)
    indexes = list(range(people))
    # At least one of each kind as soon as there are people, so a tiny demo still shows merges and orders.
    two_device = set(rng.sample(indexes, max(1, round(people * TWO_DEVICE_SHARE)) if people else 0))
    buyers = set(rng.sample(indexes, max(1, round(people * BUYER_SHARE)) if people else 0))
    free = [i for i in indexes if i not in two_device and i not in buyers]
    anonymous = set(rng.sample(free, min(len(free), round(people * ANONYMOUS_ONLY_SHARE))))
    for i in indexes:
        generator.person(two_devices=i in two_device, buyer=i in buyers, identifies=i not in anonymous)
    # Sent in time order, as a live site would: a device's anonymous visits reach the pipeline before its identify.
    generator.messages.sort(key=lambda m: m["timestamp"])
    return generator.messages


DEMO_ACTOR = "demo data"


def demo_requests(*, now: datetime) -> int:
    """A few data subject requests in every state, through the same services as the privacy screens: one overdue
    (GDPR, received 40 days ago), one due within a week, new ones, and closed ones with their receipts (a
    rectification's before and after among them). Nothing when requests exist already. Returns how many."""
    if PrivacyRequest.objects.exists():
        return 0
    people = list(Identifier.objects.filter(type="email", profile__merged_into__isnull=True)
                  .order_by("value").values_list("value", "profile__traits"))
    # A request may name someone the platform holds nothing on; a tiny demo has too few people anyway.
    people += [(f"former.customer{i}@example.net", {}) for i in range(6 - min(len(people), 6))]

    def email(index: int) -> list[dict]:
        return [{"type": "email", "value": people[index % len(people)][0]}]

    def create(kind: str, regime: str, index: int, days_ago: int, **kwargs) -> PrivacyRequest:
        return privacy.privacy_request_create(kind=kind, regime=regime, identifiers=email(index), actor=DEMO_ACTOR,
                                              received_at=now - timedelta(days=days_ago, hours=3), **kwargs)

    create("access", "gdpr", 0, 40, notes="Asked by email for a copy of their data.")
    due_soon = create("deletion", "ccpa", 1, 40, notes="Web form: delete my account.")
    privacy.privacy_request_verify(request_id=due_soon.pk, actor=DEMO_ACTOR, note="Confirmed from the account email.")
    create("rectification", "gdpr", 2, 2, changes={"city": "Lisbon"}, notes="Moved; asked to update the address.")
    name = str(people[3 % len(people)][1].get("name") or "Sam Doe")
    rectified = create("rectification", "gdpr", 3, 6, changes={"name": f"{name}-Okafor"},
                       notes="Name changed after marriage.")
    privacy.privacy_request_verify(request_id=rectified.pk, actor=DEMO_ACTOR)
    privacy.privacy_request_execute(request_id=rectified.pk, actor=DEMO_ACTOR,
                                    source=ConsentSource.PRIVACY_REQUEST)
    opt_out = create("opt_out_sale", "ccpa", 4, 3)
    privacy.privacy_request_execute(request_id=opt_out.pk, actor=DEMO_ACTOR, source=ConsentSource.PRIVACY_REQUEST)
    rejected = create("restriction", "gdpr", 5, 20)
    privacy.privacy_request_reject(request_id=rejected.pk, actor=DEMO_ACTOR,
                                   reason="The identity could not be verified: no reply to our two emails.")
    # The rectification completes once the pipeline has processed the corrected traits.
    pipeline_drain()
    return PrivacyRequest.objects.count()


DEMO_SEGMENTS = [
    ("cart-abandoners", "Cart abandoners", "realtime", "Added to cart this week, no order within two hours.",
     {"event": "Product Added", "within": "7d", "not_followed_by": {"event": "Order Completed", "within": "2h"}}),
    ("window-shoppers", "Window shoppers", "realtime", "Looked at three products or more this month, never bought.",
     {"all": [{"event": "Product Viewed", "within": "30d", "count": {"op": "gte", "value": 3}},
              {"not": {"event": "Order Completed"}}]}),
    ("big-spenders", "Big spenders", "batch", "Spent more than 300 in all.",
     {"computed": "monetary_value", "op": "gt", "value": 300}),
    ("textable-big-spenders", "Big spenders we can text", "batch", "Big spenders with a phone number.",
     {"all": [{"segment": "big-spenders"}, {"identifier": "phone"}]}),
]


def demo_segments() -> int:
    """A few segments of each mode over the demo traffic, computed at once (a worker would do it otherwise)."""
    created = 0
    for key, name, mode, description, definition in DEMO_SEGMENTS:
        if Segment.objects.filter(key=key).exists():
            continue
        segment = segment_create(key=key, name=name, mode=mode, description=description, definition=definition)
        segment_recompute(segment_id=segment.pk)
        created += 1
    return created


# The banner experiment: what each arm's people really do (Segment's e-commerce "Promotion Clicked"), so the report
# has a winner to find.
DEMO_CLICK_RATES = {"control": 0.04, "A": 0.06, "B": 0.11}
DEMO_CONSENT_SHARE = 0.8
DEMO_DAYS = 14


def demo_campaigns(*, seed: int | None, now: datetime) -> int:
    """A banner experiment with two variants and a control, run over the last two weeks for the demo's people who
    allow personalisation, through the decision service; the clicks go through collection and the pipeline, which
    attributes them. And a triggered cart reminder, left as a draft (its mailer is not real)."""
    if Campaign.objects.exists():
        return 0
    rng = random.Random(seed if seed is not None else 7)
    banner = definitions.placement_save(key="homepage_banner", name="Home page banner", channel="web",
                                        default_content={"headline": "Welcome to the trail shop"})
    email = definitions.placement_save(key="email_cart", name="Cart reminder email", channel="email",
                                       default_content={})
    spring = definitions.campaign_save(
        key="spring-trails", name="Spring trails banner", placements=[banner], priority=10, control_share=0.2,
        variants=[{"key": "A", "weight": 50, "content": {"headline": "New season, new trails", "cta": "Shop now"}},
                  {"key": "B", "weight": 50, "content": {"headline": "Free shipping on trail gear", "cta": "Get it"}}],
        goal={"event": "Promotion Clicked", "within": "2d"}, caps=[{"count": 5, "per": "day"}])
    definitions.campaign_transition(campaign=spring, action="activate")
    mailer = destination_create(name="Demo mailer", url="http://127.0.0.1:9/send", secret=uuid.uuid4().hex)
    definitions.campaign_save(
        key="cart-reminder", name="Cart reminder", placements=[email],
        variants=[{"key": "A", "weight": 100, "content": {"subject": "You left something in your cart"}}],
        control_share=0.1, goal={"event": "Order Completed", "within": "7d"},
        trigger={"segment": "cart-abandoners", "placement": "email_cart", "destination": mailer.pk, "delay": "1h",
                 "quiet_hours": {"start": "21:00", "end": "08:00"},
                 "payload": {"to": "{{ profile.email }}", "subject": "{{ content.subject }}",
                             "name": "{{ profile.traits.name }}"}})
    people = sorted(Identifier.objects.filter(type="user_id", profile__merged_into__isnull=True)
                    .values_list("value", "profile_id"))
    allowed = [(user_id, profile_id) for user_id, profile_id in people if rng.random() < DEMO_CONSENT_SHARE]
    consent_record(choices=[ConsentChoice(profile_id=profile_id, purpose="personalization", granted=True,
                                          source=ConsentSource.WEB_FORM, recorded_at=now - timedelta(days=DEMO_DAYS))
                            for _, profile_id in allowed])
    snapshot_forget()
    clicks = []
    for user_id, _ in allowed:
        shown_at = now - timedelta(days=rng.uniform(0.2, DEMO_DAYS))
        decision = decide(placement_key="homepage_banner", user_id=user_id, now=shown_at)
        if decision and decision.variant in DEMO_CLICK_RATES and rng.random() < DEMO_CLICK_RATES[decision.variant]:
            clicks.append({"type": "track", "userId": user_id, "event": "Promotion Clicked",
                           "messageId": f"demo-click-{user_id}", "properties": {"promotion_id": "spring-trails"},
                           "timestamp": (shown_at + timedelta(minutes=rng.uniform(1, 600))).isoformat()})
    while exposures_record_queued():
        pass
    if clicks:
        events_accept(source=source_get_or_create(name=SOURCE_NAME), messages=clicks)
        pipeline_drain()
    return 2


class Command(BaseCommand):
    help = "Sends synthetic web-shop traffic through the collection path, resolves it and computes traits."

    def add_arguments(self, parser):
        parser.add_argument("--profiles", type=int, default=300, help="How many people to simulate (default 300).")
        parser.add_argument("--seed", type=int, default=None, help="Seed for a reproducible data set.")
        parser.add_argument("--if-empty", action="store_true", help="Do nothing when any event is already stored.")

    def handle(self, *args, profiles: int, seed: int | None, if_empty: bool, **options):
        if if_empty and (Event.objects.exists() or PendingEvent.objects.exists()):
            self.stdout.write("Events already exist; seed_demo skipped.")
            return
        source = source_get_or_create(name=SOURCE_NAME)
        messages = demo_messages(people=profiles, seed=seed, now=timezone.now())
        accepted = duplicates = 0
        for start in range(0, len(messages), CHUNK):
            result = events_accept(source=source, messages=messages[start:start + CHUNK])
            if result.rejected:
                raise RuntimeError(f"demo messages rejected: {[r.as_dict() for r in result.rejected[:3]]}")
            accepted += result.accepted
            duplicates += result.duplicates
        processed = pipeline_drain()
        requests = demo_requests(now=timezone.now())
        enriched = profiles_enrich()
        segments = demo_segments()
        campaigns = demo_campaigns(seed=seed, now=timezone.now())
        learned = demo_learning()
        self.stdout.write(self.style.SUCCESS(
            f"Sent {len(messages)} messages ({accepted} new, {duplicates} duplicates) for {profiles} people; "
            f"processed {processed}; {Profile.objects.filter(merged_into__isnull=True).count()} live profiles, "
            f"{MergeRecord.objects.filter(outcome=MergeRecord.Outcome.MERGED).count()} merges, {enriched} enriched; "
            f"{requests} privacy requests; {segments} segments; {campaigns} campaigns; {learned}."))


def demo_learning() -> str:
    """What the demo traffic teaches: the recommendations' first refresh and a churn model's first version (a
    demo too small for the model leaves it failed with the reason, as the models screen then shows)."""
    run = recommendations_refresh()
    model = (PredictiveModel.objects.filter(key="churn_risk").first()
             or model_create(key="churn_risk", target_event="Order Completed", horizon_days=30, negate=True))
    # Without a broker the task queued on creation has already trained it.
    version = model.versions.order_by("-version").first() or model_train(model_id=model.pk)
    hit_rate = (run.evaluation.get("hybrid", {}).get("hit_rate_at_10") if run else None)
    return (f"recommendations for {run.people if run else 0} people (hit rate at 10: {hit_rate}), churn model "
            + (f"AUC {version.auc}" if version else "not trained (too little history)"))
