"""Triggered actions: when a person enters a triggered campaign's segment, the campaign's content is sent to its
destination (a webhook: an email or SMS service) with a templated payload.

1. An entry becomes a pending send inside the transaction that recorded it (segments calls `triggers_on_entries`
   for every entry), one per (campaign, membership row): a replayed batch or recompute adds nothing.
2. A sender claims due sends (`sending`, committed, FOR UPDATE SKIP LOCKED): two workers never hold the same one.
3. It decides the claimed batch together, set-based: the person now (merges followed), still in the segment,
   the global holdout, targeting and consent to the campaign's purpose in one statement, sale/sharing not refused
   (the payload leaves the platform: a person who objected to that is sent nothing, while one who never chose is,
   as the GDPR's default denial of sale/sharing is not meant for the sender a consented email goes out through),
   exclusivity, quiet hours in the person's time zone (the `timezone` trait, else
   CAMPAIGNS_TIME_ZONE), frequency caps over everything already shown or in flight with other senders, and a
   sticky variant. Every assignment (a variant, control, the holdout) is recorded as an exposure when it is
   decided, before anything is posted, so the arms are compared as assigned (intention to treat) whatever the
   receivers do; control and holdout people are sent nothing.
4. Each remaining send is one signed POST, after consent is read once more; its outcome (sent, a retry with
   backoff, or failed) is committed right after it. Sends not yet posted when the run's time is up go back to
   wait for the next run.

At most once: a send is posted only by the worker that claimed it, and only from `sending`. A retry after a
failed try carries the same id (X-CDP-Delivery and Idempotency-Key), so a receiver that processed a request it
then failed to answer can deduplicate. A worker that dies mid-request leaves its send in `sending`; it becomes
`unknown` after SENDING_LEASE and is never sent again, because whether it arrived cannot be known.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from campaigns import rules
from campaigns.models import TriggeredSend
from campaigns.selectors import LiveTrigger, Seen, people_seen, snapshot, triggered_sends_claimed
from campaigns.services.decisions import variant_for
from campaigns.services.exposures import ExposureRecord, exposures_write
from profiles.common.queueing import enqueue_after_commit
from profiles.models import Profile
from segments.models import SegmentMembership
from consent.selectors import SALE_SHARING, consent_refused, consent_refused_sql
from segments.rules import Consent
from segments.selectors import destination_get, targeting_matches_many
from segments.services.deliveries import RETRY_CAP_S, RETRYABLE_4XX, retry_delay, signed_post

logger = logging.getLogger(__name__)
SEND_TASK = "campaigns.send_triggered"
# Sends claimed at once: each may wait for its receiver's full timeout, and the last of a batch must be posted
# well within SENDING_LEASE of its claim.
CLAIM_BATCH = 20
SENDING_LEASE = timedelta(minutes=15)
_SENDS = TriggeredSend._meta.db_table


def triggers_on_entries(*, segment_id: int, profile_ids: list[int], occurred_at: datetime) -> int:
    """A pending send for each running campaign triggered by this segment and each profile that has just entered
    it (their open membership rows), due after the trigger's delay; one statement, inside the caller's
    transaction. Returns how many were created."""
    triggered = [t for t in snapshot().triggers.get(segment_id, ()) if t.campaign.running(occurred_at)]
    if not triggered or not profile_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_SENDS} (send_id, campaign_id, profile_id, membership_id, segment_id, entered_at, status, "
            "reason, variant, due_at, attempts, last_error, created_at) "
            "SELECT gen_random_uuid(), c.campaign_id, m.profile_id, m.id, m.segment_id, m.entered_at, 'pending', '', "
            "'', m.entered_at + make_interval(secs => c.delay_s), 0, '', %s "
            f"FROM {SegmentMembership._meta.db_table} m "
            "CROSS JOIN unnest(%s::bigint[], %s::float8[]) AS c(campaign_id, delay_s) "
            "WHERE m.segment_id = %s AND m.profile_id = ANY(%s::bigint[]) AND m.exited_at IS NULL "
            "ON CONFLICT (campaign_id, membership_id) DO NOTHING",
            [timezone.now(), [t.campaign.id for t in triggered], [t.trigger.delay.total_seconds() for t in triggered],
             segment_id, "{" + ",".join(str(int(p)) for p in profile_ids) + "}"])
        created = cursor.rowcount
    if created and any(not t.trigger.delay for t in triggered):
        enqueue_after_commit(SEND_TASK)
    return created


# --- sending ------------------------------------------------------------------------------------------------


def _claim(now: datetime, limit: int) -> list[int]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_SENDS} SET status = 'sending', claimed_at = %s WHERE id IN (SELECT id FROM {_SENDS} "
            "WHERE status IN ('pending', 'retrying') AND due_at <= %s ORDER BY due_at LIMIT %s "
            "FOR UPDATE SKIP LOCKED) RETURNING id", [now, now, limit])
        return sorted(row[0] for row in cursor.fetchall())


def _expire_abandoned(now: datetime) -> int:
    """Sends left in `sending` past the lease by a worker that stopped: never sent again (see the module)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_SENDS} SET status = 'unknown', reason = 'sender_stopped', last_error = 'The sender stopped "
            "while this send was in flight; it may or may not have arrived, so it is not sent again.' "
            "WHERE status = 'sending' AND claimed_at < %s", [now - SENDING_LEASE])
        if cursor.rowcount:
            logger.warning("%s triggered sends abandoned mid-request are now unknown", cursor.rowcount)
        return cursor.rowcount


def _time_zone(traits: dict) -> ZoneInfo:
    name = traits.get("timezone") if isinstance(traits, dict) else None
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a trait that is no time zone: the setting's
    return ZoneInfo(settings.CAMPAIGNS_TIME_ZONE)


@dataclass
class _Outcome:
    send_id: int
    status: str
    reason: str = ""
    variant: str = ""
    due_at: datetime | None = None
    exposure: ExposureRecord | None = None


def _finish(outcomes: list[_Outcome]) -> None:
    """Writes decided outcomes in one transaction, set-based: skips and deferrals, and the sends about to be
    posted (still `sending`, their variant kept for a retry), with every exposure decided."""
    with transaction.atomic():
        exposures_write([o.exposure for o in outcomes if o.exposure is not None])
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {_SENDS} s SET status = o.status, reason = o.reason, variant = o.variant, "
                "due_at = coalesce(o.due_at, s.due_at), "
                "claimed_at = CASE WHEN o.status = 'sending' THEN s.claimed_at END FROM jsonb_to_recordset(%s::jsonb) "
                "AS o(id bigint, status text, reason text, variant text, due_at timestamptz) "
                "WHERE s.id = o.id AND s.status = 'sending'",
                [orjson.dumps([{"id": o.send_id, "status": o.status, "reason": o.reason, "variant": o.variant,
                                "due_at": o.due_at.isoformat() if o.due_at else None} for o in outcomes]).decode()])


def _unit(row) -> str:
    return rules.allocation_unit(user_id=row.user_id, anonymous_id=row.anonymous_id, profile_id=row.profile_id)


def _decide(claimed: list, live, now: datetime) -> tuple[list[_Outcome], list[tuple]]:
    """The outcome of every claimed send (those to post stay `sending`), and those to post as (row, trigger,
    variant)."""
    outcomes, to_post = [], []
    triggers = {t.campaign.id: t for ts in live.triggers.values() for t in ts}
    people = sorted({row.profile_id for row in claimed if row.profile_id is not None})
    # Targeting and consent for the whole batch in one statement: campaigns by id, purposes labelled below zero.
    purposes = sorted({t.campaign.purpose for t in triggers.values() if t.campaign.purpose in live.purposes})
    nodes = {cid: t.campaign.targeting for cid, t in triggers.items() if t.campaign.targeting is not None}
    nodes.update({-1 - n: Consent(purpose, True) for n, purpose in enumerate(purposes)})
    held = targeting_matches_many(nodes=nodes, profile_ids=people, now=now, segment_ids=live.segment_ids,
                                  consent_sql=live.consent_sql)

    def allows(purpose: str, profile_id: int) -> bool:
        return purpose in purposes and (-1 - purposes.index(purpose), profile_id) in held

    refused_sharing = consent_refused(profile_ids=people, purpose=SALE_SHARING)
    seen: dict[int, Seen] = people_seen(
        profile_ids=people, now=now, claimed={row.id: row.profile_id for row in claimed},
        channel_of={cid: t.placement.channel for cid, t in triggers.items()})
    for row in claimed:
        trigger: LiveTrigger | None = triggers.get(row.campaign_id)
        campaign = trigger.campaign if trigger else None

        def outcome(status: str, reason: str = "", variant: str = "", exposed: bool = False, due_at=None) -> None:
            exposure = None
            if exposed:
                exposure = ExposureRecord(str(row.send_id), None if variant == rules.HOLDOUT else campaign.id,
                                          trigger.placement.id, row.profile_id, f"profile:{row.profile_id}", variant,
                                          trigger.placement.channel, now.isoformat())
            outcomes.append(_Outcome(row.id, status, reason, variant, due_at, exposure))

        if trigger is None or not campaign.running(now):
            outcome("skipped", "campaign_not_running")
            continue
        if row.profile_id is None:
            outcome("skipped", "profile_gone")
            continue
        if not row.member:
            outcome("skipped", "left_segment")
            continue
        person = seen.setdefault(row.profile_id, Seen({}, {}, {}))
        if rules.held_out(share=live.holdout_share, unit=_unit(row), earlier=person.held_out):
            outcome("skipped", "global_holdout", rules.HOLDOUT, exposed=True)
            continue
        if campaign.targeting is not None and (campaign.id, row.profile_id) not in held:
            outcome("skipped", "not_targeted")
            continue
        if not allows(campaign.purpose, row.profile_id) or row.profile_id in refused_sharing:
            outcome("skipped", "no_consent")
            continue
        quiet = trigger.trigger.quiet_hours
        if quiet is not None:
            local = now.astimezone(_time_zone(row.traits))
            if quiet.holds(local):
                outcome("pending", "quiet_hours", row.variant, due_at=quiet.next_end(local))
                continue
        if campaign.exclusive_with & live.active_ids & set(person.first_variant):
            outcome("skipped", "exclusive")
            continue
        channel = trigger.placement.channel
        channel_times = person.channel_times.get(channel, [])
        if any(person.count(channel_times, cap, now) >= cap.count for cap in live.channel_caps.get(channel, ())) \
                or any(person.count(person.campaign_times.get(campaign.id, []), cap, now) >= cap.count
                       for cap in campaign.caps):
            outcome("skipped", "frequency_cap")
            continue
        # The variant a retry was given before, unless the campaign no longer has it.
        kept = row.variant if row.variant in {v.key for v in campaign.variants} | {"control"} else None
        variant = kept or variant_for(campaign, _unit(row), person.first_variant.get(campaign.id))
        # What this batch sends counts for the rest of it: two triggers for one person stay within the caps.
        person.add(campaign_id=campaign.id, variant=variant, channel=channel, shown=now)
        if variant == "control":
            outcome("skipped", "control", "control", exposed=True)
            continue
        outcome(TriggeredSend.Status.SENDING, "", variant, exposed=True)
        to_post.append((row, trigger, variant))
    return outcomes, to_post


def _payload(row, trigger: LiveTrigger, variant: str) -> bytes:
    content = next(v.content for v in trigger.campaign.variants if v.key == variant)
    values = {"profile": {"id": row.profile_id, "user_id": row.user_id, "email": row.email, "phone": row.phone,
                          "traits": row.traits or {}},
              "campaign": {"id": trigger.campaign.id, "key": trigger.campaign.key}, "variant": variant,
              "content": content, "segment": {"id": row.segment_id, "key": trigger.trigger.segment},
              "entered_at": row.entered_at.isoformat(), "send_id": str(row.send_id)}
    template = trigger.trigger.payload
    if template is None:
        template = {"type": "campaign.triggered", "send_id": "{{ send_id }}", "campaign": "{{ campaign }}",
                    "variant": "{{ variant }}", "content": "{{ content }}", "segment": "{{ segment }}",
                    "entered_at": "{{ entered_at }}", "profile": "{{ profile }}"}
    return orjson.dumps(rules.render_payload(template, values))


def _allows_now(profile_id: int, purpose: str, consent_sql) -> bool:
    """Whether the profile (or the one it has been merged into since) allows the purpose and has not refused
    sale/sharing, now (one query)."""
    allowed, allowed_params = consent_sql(purpose, "p")
    refused, refused_params = consent_refused_sql(purpose=SALE_SHARING, profile_alias="p")
    profiles = Profile._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {profiles} t JOIN {profiles} p ON p.id = coalesce("
                       f"t.merged_into_id, t.id) WHERE t.id = %s AND p.merged_into_id IS NULL AND {allowed} "
                       f"AND NOT {refused})", [profile_id, *allowed_params, *refused_params])
        return cursor.fetchone()[0]


def _post_one(row, trigger: LiveTrigger, variant: str, destinations: dict, now: datetime | None,
              consent_sql) -> str:
    """One signed POST of a claimed send, its outcome committed at once; returns the new status. `destinations`
    caches the destinations read so far in this run; `now` fixes the clock (tests), else each post reads it;
    `consent_sql` is the snapshot's (campaigns.selectors.Snapshot.consent_sql)."""
    now = now or timezone.now()
    if trigger.trigger.destination not in destinations:
        destinations[trigger.trigger.destination] = destination_get(destination_id=trigger.trigger.destination)
    destination = destinations[trigger.trigger.destination]
    # Also from `unknown`: a sender that stalled past the lease still knows best what became of its post.
    send = TriggeredSend.objects.filter(pk=row.id, status__in=[TriggeredSend.Status.SENDING,
                                                               TriggeredSend.Status.UNKNOWN])
    if destination is None or not destination.active:
        send.update(status=TriggeredSend.Status.FAILED, reason="destination_inactive", variant=variant,
                    last_error="The destination is missing or inactive.", claimed_at=None)
        return TriggeredSend.Status.FAILED
    # Consent as it is at the moment of posting: an opt-out recorded since the batch was decided holds.
    if not _allows_now(row.profile_id, trigger.campaign.purpose, consent_sql):
        send.update(status=TriggeredSend.Status.SKIPPED, reason="no_consent", variant=variant, claimed_at=None)
        return TriggeredSend.Status.SKIPPED
    answer = signed_post(url=destination.url, secret=destination.secret, body=_payload(row, trigger, variant),
                         delivery_id=str(row.send_id), now=now)
    attempts = row.attempts + 1
    code = answer.status_code
    fields = {"attempts": attempts, "last_status_code": code, "last_error": answer.error, "variant": variant,
              "claimed_at": None}
    with transaction.atomic():
        if code is not None and 200 <= code < 300:
            send.update(status=TriggeredSend.Status.SENT, reason="", sent_at=now, **fields)
            return TriggeredSend.Status.SENT
        if (code is not None and 400 <= code < 500 and code not in RETRYABLE_4XX) \
                or attempts >= settings.DELIVERY_MAX_ATTEMPTS:
            send.update(status=TriggeredSend.Status.FAILED, reason="refused" if code else "unreachable", **fields)
            return TriggeredSend.Status.FAILED
        wait = retry_delay(attempt=attempts, key=str(row.send_id))
        if answer.retry_after_s is not None:
            wait = max(wait, min(answer.retry_after_s, RETRY_CAP_S))
        send.update(status=TriggeredSend.Status.RETRYING, due_at=now + timedelta(seconds=wait), **fields)
        return TriggeredSend.Status.RETRYING


def _hand_back(send_ids: list[int]) -> None:
    """Claimed sends never posted (the run's time ran out, or it was stopped between posts) wait for the next
    run as they were."""
    if send_ids:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {_SENDS} SET status = CASE WHEN attempts > 0 THEN 'retrying' ELSE 'pending' END, "
                "claimed_at = NULL WHERE id = ANY(%s::bigint[]) AND status = 'sending'",
                ["{" + ",".join(str(int(i)) for i in send_ids) + "}"])


def triggered_sends_due(*, now: datetime | None = None, budget_s: float = 25.0) -> dict[str, int]:
    """Claims, decides and sends due triggered sends in batches until none is due or `budget_s` has passed (no
    post starts after it: the task's time limit leaves room for one to finish); returns how many ended in each
    status. Several may run at once: each claims its own sends."""
    outcomes: Counter = Counter()
    destinations: dict = {}
    deadline = time.monotonic() + budget_s
    _expire_abandoned(now or timezone.now())
    while time.monotonic() < deadline:
        at = now or timezone.now()
        claimed_ids = _claim(at, CLAIM_BATCH)
        if not claimed_ids:
            break
        live = snapshot()
        decided, to_post = _decide(triggered_sends_claimed(send_ids=claimed_ids), live, at)
        _finish(decided)
        outcomes.update(o.status for o in decided if o.status != TriggeredSend.Status.SENDING)
        unposted = [row.id for row, *_ in to_post]
        try:
            for row, trigger, variant in to_post:
                if time.monotonic() >= deadline:
                    break
                # Taken off first: a send interrupted mid-request stays `sending` (whether it arrived is unknown).
                unposted.remove(row.id)
                outcomes[_post_one(row, trigger, variant, destinations, now, live.consent_sql)] += 1
        finally:
            _hand_back(unposted)
    return dict(outcomes)


# --- erasure and export ---------------------------------------------------------------------------------------


def triggered_sends_erase(*, profile_ids: list[int], limit: int) -> int:
    ids = list(TriggeredSend.objects.filter(profile_id__in=profile_ids).values_list("id", flat=True)[:limit])
    return TriggeredSend.objects.filter(id__in=ids).delete()[0] if ids else 0
