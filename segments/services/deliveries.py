"""Webhook deliveries of segment enter and exit events: created set-based after a recompute, sent signed by
Celery, retried with backoff until delivered or dead, resent on request, erased with their subject.

Lifecycle: pending -> delivered | retrying -> ... -> delivered | dead; skipped when the person may not be shared
(sale_sharing) at enqueue or send time. A delivery's body is stored when it is created (`payload`), so a retry
or a resend sends the same bytes under the same delivery_id: receivers deduplicate on X-CDP-Delivery.
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

import orjson
import requests
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from consent.selectors import SALE_SHARING, consent_allowed_sql
from profiles.common.queueing import enqueue_after_commit
from profiles.models import Identifier, Profile
from segments import webhooks
from segments.models import Delivery, DeliveryAttempt, Destination, Segment
from segments.outbound import public_session

DELIVER_TASK = "segments.deliver"
# Deliveries per queued task: a task sends them one after the other, so 20 receivers at the full timeout
# (20 x 13 s) stay inside the task's time limit, and several workers share a large recompute's deliveries.
TASK_BATCH = 20
# Connect, read. Short: a receiver that is slow to answer is retried later rather than holding a worker.
TIMEOUT_S = (3.05, 10)
# The longest wait between two tries, whatever DELIVERY_MAX_ATTEMPTS says.
RETRY_CAP_S = 3600
# Each wait is lengthened by up to this fraction, so deliveries that failed together do not retry together.
JITTER = 0.25
# Statuses a 4xx still gets a retry for: the receiver asks to be tried later.
RETRYABLE_4XX = frozenset({408, 429})
USER_AGENT = "cdp-webhooks/1.0"
DUE = (Delivery.Status.PENDING, Delivery.Status.RETRYING)

# One connection pool per process: many deliveries go to the same few receivers. Each connection is checked to
# reach a public address (segments.outbound).
_session = public_session()


class DeliveryStateError(Exception):
    """The delivery's status does not allow the action; `code` says which rule refused it."""

    def __init__(self, *, code: str, message: str):
        super().__init__(message)
        self.code = code


# --- enqueue ------------------------------------------------------------------------------------------------


def _int_array(values) -> str:
    # An array literal: psycopg's list adapter checks every element in Python.
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def _utc_iso(at: datetime) -> str:
    return at.astimezone(dt_timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def deliveries_enqueue(*, segment_id: int, entered: list[int], exited: list[int], occurred_at: datetime) -> int:
    """Creates one pending delivery per active destination of the segment and per profile that entered or
    exited it and may be shared (sale_sharing), each with its body built from the profile as it is now; returns
    how many were created. Queues their sending after commit, one task per TASK_BATCH deliveries.

    Runs inside the caller's transaction (the recompute's): two queries whatever the number of profiles, the
    purpose's rule and one INSERT ... SELECT. Raises Purpose.DoesNotExist when sale_sharing is missing.
    """
    if not entered and not exited:
        return 0
    allowed, allowed_params = consent_allowed_sql(purpose=SALE_SHARING, profile_alias="p")
    now = timezone.now()
    identifier = Identifier._meta.db_table

    def first(kind: str) -> str:
        # The earliest held identifier of the kind (identifier_profile_type index), null when none.
        return (f"(SELECT i.value FROM {identifier} i WHERE i.profile_id = p.id AND i.type = '{kind}' "
                "ORDER BY i.first_seen, i.id LIMIT 1)")

    sql = f"""
        WITH moves AS (
            SELECT DISTINCT m.profile_id, m.type FROM (
                SELECT unnest(%s::bigint[]) AS profile_id, 'segment.entered'::text AS type
                UNION ALL SELECT unnest(%s::bigint[]), 'segment.exited'::text) m
        ), people AS MATERIALIZED (
            -- Materialized: each person's identifiers are looked up once, not once per destination.
            SELECT m.type, p.id AS profile_id,
                   jsonb_build_object('id', p.id, 'user_id', {first('user_id')}, 'email', {first('email')},
                                      'traits', p.traits) AS profile
            FROM moves m JOIN {Profile._meta.db_table} p ON p.id = m.profile_id
            WHERE {allowed}
        ), rows AS MATERIALIZED (
            -- Materialized so that each row's uuid is drawn once: the column and the body carry the same one.
            SELECT gen_random_uuid() AS delivery_id, d.id AS destination_id, s.id AS segment_id, s.key,
                   people.type, people.profile_id, people.profile
            FROM {Segment._meta.db_table} s
            JOIN {Segment.destinations.through._meta.db_table} sd ON sd.segment_id = s.id
            JOIN {Destination._meta.db_table} d ON d.id = sd.destination_id AND d.active
            CROSS JOIN people
            WHERE s.id = %s
        )
        INSERT INTO {Delivery._meta.db_table} (delivery_id, destination_id, segment_id, profile_id, type,
            occurred_at, payload, status, attempts, last_error, next_attempt_at, created_at)
        SELECT r.delivery_id, r.destination_id, r.segment_id, r.profile_id, r.type, %s,
               jsonb_build_object('type', r.type, 'delivery_id', r.delivery_id::text, 'occurred_at', %s::text,
                                  'segment', jsonb_build_object('id', r.segment_id, 'key', r.key),
                                  'profile', r.profile),
               'pending', 0, '', %s, %s
        FROM rows r ORDER BY r.destination_id, r.profile_id, r.type
        RETURNING id"""
    params = [_int_array(entered), _int_array(exited), *allowed_params, segment_id, occurred_at,
              _utc_iso(occurred_at), now, now]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = sorted(row[0] for row in cursor.fetchall())
    for start in range(0, len(ids), TASK_BATCH):
        enqueue_after_commit(DELIVER_TASK, ids[start:start + TASK_BATCH])
    return len(ids)


# --- sending ------------------------------------------------------------------------------------------------


def retry_delay(*, attempt: int, key: str) -> float:
    """Seconds to wait after failed try number `attempt` (1, 2, ...): DELIVERY_RETRY_BASE_SECONDS doubled per
    try, lengthened by up to JITTER, capped at RETRY_CAP_S. The jitter is drawn from the delivery's id, so it
    spreads deliveries apart yet a delivery's schedule can be stated exactly."""
    fraction = int.from_bytes(hashlib.blake2b(f"{key}:{attempt}".encode(), digest_size=8).digest()) / 2**64
    base = settings.DELIVERY_RETRY_BASE_SECONDS * 2 ** min(attempt - 1, 32)
    return min(RETRY_CAP_S, base * (1 + JITTER * fraction))


@dataclass(frozen=True)
class _Response:
    status_code: int | None
    error: str
    duration_ms: int
    retry_after_s: int | None = None


def _post(url: str, body: bytes, headers: dict[str, str]) -> _Response:
    started = time.monotonic()
    try:
        # Redirects are not followed: the signed body goes to the URL the destination names, nowhere else. The
        # body of the answer is never read (stream), only its status.
        with _session.post(url, data=body, headers=headers, timeout=TIMEOUT_S, allow_redirects=False,
                           stream=True) as response:
            code = response.status_code
            retry_after = response.headers.get("Retry-After", "")
            reason = (response.reason or "")[:100]
    except (requests.RequestException, ValueError) as exc:  # ValueError: a URL that cannot even be parsed
        return _Response(None, f"{type(exc).__name__}: {exc}"[:500], int((time.monotonic() - started) * 1000))
    elapsed = int((time.monotonic() - started) * 1000)
    error = "" if 200 <= code < 300 else f"HTTP {code} {reason}".strip()
    return _Response(code, error, elapsed, int(retry_after) if retry_after.isdigit() else None)


def signed_post(*, url: str, secret: str, body: bytes, delivery_id: str, now: datetime) -> _Response:
    """POSTs a JSON body signed with `secret` (segments.webhooks) under its delivery id, which a receiver
    deduplicates on; one try, its outcome returned, never raised. Campaigns' triggered actions send the same way."""
    timestamp = int(now.timestamp())
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-CDP-Delivery": delivery_id,
               "Idempotency-Key": delivery_id, "X-CDP-Timestamp": str(timestamp),
               "X-CDP-Signature": webhooks.sign(secret, timestamp, body)}
    return _post(url, body, headers)


def _sharing_rule() -> tuple[str, list]:
    """Whether the profile `%s` (a merged one stands for its survivor) may be shared now, as one query."""
    allowed, params = consent_allowed_sql(purpose=SALE_SHARING, profile_alias="p")
    table = Profile._meta.db_table
    # Merges always point a tombstone at its live survivor (profiles.selectors), so one hop is enough.
    return (f"SELECT EXISTS (SELECT 1 FROM {table} t JOIN {table} p ON p.id = COALESCE(t.merged_into_id, t.id) "
            f"WHERE t.id = %s AND p.merged_into_id IS NULL AND {allowed})"), params


def _allowed(rule: tuple[str, list], profile_id: int | None) -> bool:
    if profile_id is None:
        return False
    sql, params = rule
    with connection.cursor() as cursor:
        cursor.execute(sql, [profile_id, *params])
        return cursor.fetchone()[0]


def _send_one(which: Q, rule: tuple[str, list], now: datetime) -> str | None:
    """Claims one due delivery matching `which` and tries it once; returns its new status, or None when none
    was due (already delivered, not yet due, or being sent by another worker right now).

    The row stays locked (FOR UPDATE SKIP LOCKED) while the request is under way, so two workers never send
    the same delivery at once, and the outcome is committed with the lock: once delivered, never sent again. A
    worker that dies mid-request leaves it due, to be sent again (receivers deduplicate on the delivery id).
    """
    with transaction.atomic():
        # No ORDER BY: any due row will do, and an ordered claim would sort every due row each time.
        claimed = list(Delivery.objects.select_for_update(skip_locked=True, of=("self",))
                       .select_related("destination").filter(which, status__in=DUE, next_attempt_at__lte=now)
                       .order_by()[:1])
        if not claimed:
            return None
        delivery = claimed[0]
        fields = ["status", "attempts", "last_error", "next_attempt_at", "delivered_at"]
        if not delivery.destination.active:
            delivery.status, delivery.next_attempt_at = Delivery.Status.DEAD, None
            delivery.last_error = "The destination is inactive; resend once it is active again."
            delivery.save(update_fields=fields)
            return delivery.status
        if not _allowed(rule, delivery.profile_id):
            delivery.status, delivery.next_attempt_at = Delivery.Status.SKIPPED, None
            delivery.last_error = "Not sent: the person may not be shared (sale_sharing)."
            delivery.save(update_fields=fields)
            return delivery.status
        answer = signed_post(url=delivery.destination.url, secret=delivery.destination.secret,
                             body=orjson.dumps(delivery.payload), delivery_id=str(delivery.delivery_id), now=now)
        delivery.attempts += 1
        delivery.last_error = answer.error
        code = answer.status_code
        if code is not None and 200 <= code < 300:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = Delivery.Status.DELIVERED, now, None
        elif (code is not None and 400 <= code < 500 and code not in RETRYABLE_4XX) \
                or delivery.attempts >= settings.DELIVERY_MAX_ATTEMPTS:
            # A 4xx says the request itself is wrong: sending it again cannot help.
            delivery.status, delivery.next_attempt_at = Delivery.Status.DEAD, None
        else:
            wait = retry_delay(attempt=delivery.attempts, key=str(delivery.delivery_id))
            if answer.retry_after_s is not None:
                wait = max(wait, min(answer.retry_after_s, RETRY_CAP_S))
            delivery.status, delivery.next_attempt_at = Delivery.Status.RETRYING, now + timedelta(seconds=wait)
        delivery.save(update_fields=fields)
        DeliveryAttempt.objects.create(delivery=delivery, at=now, status_code=code, error=answer.error,
                                       duration_ms=answer.duration_ms)
        return delivery.status


def deliveries_send(*, delivery_ids: list[int], now: datetime | None = None) -> dict[str, int]:
    """Tries each of these deliveries that is due, once, each in its own transaction (see _send_one); returns
    how many ended in each status. Idempotent: a delivery not due (delivered, dead, waiting for its retry) is left
    alone. `now` fixes the clock (tests); by default each try reads the time when it starts."""
    rule = _sharing_rule()
    outcomes: Counter = Counter()
    for delivery_id in sorted(set(delivery_ids)):
        status = _send_one(Q(pk=delivery_id), rule, now or timezone.now())
        if status is not None:
            outcomes[status] += 1
    return dict(outcomes)


def deliveries_send_due(*, now: datetime | None = None, limit: int = 10_000, budget_s: float = 25.0) -> dict[str, int]:
    """Tries every due delivery once (retries whose time has come, and any pending one whose task was lost),
    until none is due, `limit` were tried or `budget_s` seconds have passed; returns how many ended in each
    status. Several may run at once: each claims its own rows."""
    rule = _sharing_rule()
    outcomes: Counter = Counter()
    deadline = time.monotonic() + budget_s
    for _ in range(limit):
        if time.monotonic() > deadline:
            break
        status = _send_one(Q(), rule, now or timezone.now())
        if status is None:
            break
        outcomes[status] += 1
    return dict(outcomes)


# --- resend -------------------------------------------------------------------------------------------------


@transaction.atomic
def delivery_resend(*, delivery_id: int) -> Delivery:
    """Sends a delivery again, as it was: same delivery_id, same body, with a fresh count of tries (its earlier
    attempts stay). For a dead, delivered, skipped or retrying one (a retrying one is tried now); queues the
    sending after commit. Raises Delivery.DoesNotExist, and DeliveryStateError for one still pending."""
    # Waits for a worker that is sending it right now, so the reset is never overwritten by that try's outcome.
    delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
    if delivery.status == Delivery.Status.PENDING:
        raise DeliveryStateError(code="delivery_pending", message="The delivery is already waiting to be sent.")
    delivery.status, delivery.attempts, delivery.last_error = Delivery.Status.PENDING, 0, ""
    delivery.next_attempt_at, delivery.delivered_at = timezone.now(), None
    delivery.save(update_fields=["status", "attempts", "last_error", "next_attempt_at", "delivered_at"])
    enqueue_after_commit(DELIVER_TASK, [delivery.pk])
    return delivery


# --- erasure and export (consent's registry) ------------------------------------------------------------------


def delivery_data_erase(*, profile_ids: list[int], limit: int) -> dict[str, int]:
    """Deletes up to `limit` deliveries of these profiles (their bodies hold the person's identifiers and
    traits) with their attempts; idempotent."""
    ids = list(Delivery.objects.filter(profile_id__in=profile_ids).values_list("id", flat=True)[:limit])
    if not ids:
        return {"segment_deliveries": 0, "segment_delivery_attempts": 0}
    _, deleted = Delivery.objects.filter(id__in=ids).delete()
    return {"segment_deliveries": deleted.get("segments.Delivery", 0),
            "segment_delivery_attempts": deleted.get("segments.DeliveryAttempt", 0)}


def delivery_data_export(*, profile_ids: list[int]) -> dict:
    """What was sent about these profiles, and to whom (GDPR Art. 15(1)(c): the recipients)."""
    return {"segment_deliveries": list(
        Delivery.objects.filter(profile_id__in=profile_ids).order_by("created_at", "id").values(
            "delivery_id", "type", "segment__key", "destination__name", "destination__url", "occurred_at",
            "status", "delivered_at", "payload"))}
