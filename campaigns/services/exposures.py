"""Recording what decisions showed, off the request's path: a decision queues its exposure in Redis and answers;
a recorder moves the queue into PostgreSQL in batches. Until recorded, an exposure also sits in its person's
pending set, so frequency caps count it.

Without Redis (the embedded mode, tasks in-process) an exposure is written at once.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import orjson
from django.conf import settings
from django.db import connection, transaction

from campaigns.models import Exposure
from campaigns.services.conversions import conversions_for_recorded
from consent.services.suppression import identifiers_suppressed
from profiles.common.fast_redis import Script
from profiles.common.locks import CONVERSION_ATTRIBUTION, EXPOSURE_RECORDER, session_try_lock, xact_lock
from profiles.selectors import identifier_normalise

logger = logging.getLogger(__name__)
QUEUE = "campaigns:exposures"
PENDING = "campaigns:pending:"
SEQUENCE = "campaigns:sequence:"
# A pending entry outlives any plausible recorder outage; past that, an unrecorded exposure stops counting.
PENDING_TTL_S = 7 * 24 * 3600
RECORD_BATCH = 5_000
RECORD_TASK = "campaigns.record_exposures"
_SCHEDULED = "campaigns:record-scheduled"


@dataclass(frozen=True)
class ExposureRecord:
    decision_id: str
    campaign_id: int | None
    placement_id: int
    profile_id: int | None
    subject: str
    variant: str
    channel: str
    shown_at: str  # ISO 8601

    @property
    def counted_as(self) -> str:
        return pending_key(self.subject)


def pending_key(subject: str) -> str:
    """A person's pending set, by the id the request sent: read with the same id in the next decision (the
    recorded exposures are also found by profile; pending ones wait a second or so)."""
    return f"{PENDING}{subject}"


def sequence_key(subject: str) -> str:
    """How many exposures have been queued under an id sent: a decision queues its exposure only if none was
    queued since it read its caps (exposure_queue)."""
    return f"{SEQUENCE}{subject}"


_redis_client = None


def redis():
    """The Redis client of the broker's server (None without REDIS_URL)."""
    global _redis_client
    if not settings.REDIS_URL:
        return None
    if _redis_client is None:
        import redis as redis_lib

        _redis_client = redis_lib.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _redis_client


# Queues an exposure in one round trip, unless another decision for the same id was queued since this one read
# the caps (the sequence it read, ARGV[4], no longer holds; "*" skips the check): then it returns -1 and queues
# nothing. Otherwise onto the queue, into its person's pending set (with its expiry), the sequence moved on, and
# whether the recorder needs a kick (at most one per second): 1 when it does.
_QUEUE_SCRIPT = Script("""
local sequence = redis.call('GET', KEYS[4]) or ''
if ARGV[4] ~= '*' and sequence ~= ARGV[4] then return -1 end
redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], ARGV[3])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if redis.call('SET', KEYS[3], 1, 'NX', 'EX', 1) then return 1 end
return 0
""")


def exposure_queue(*, record: ExposureRecord, schedule, sequence: str | None = None) -> bool:
    """Queues one exposure (and counts it as pending for its person); `schedule` queues the recorder. With the
    `sequence` its decision read (selectors.shared_reads), queues nothing and returns False when another exposure
    was queued under the same id since: the decision, which may have read caps that no longer hold, is taken
    again. When Redis is missing or fails, the exposure is written to PostgreSQL at once: a failure to queue must
    not lose it."""
    client = redis()
    if client is not None:
        payload = orjson.dumps(record)  # orjson writes a dataclass as its fields, natively
        try:
            outcome = _QUEUE_SCRIPT(client, keys=[QUEUE, record.counted_as, _SCHEDULED, sequence_key(record.subject)],
                                    args=[payload, datetime.fromisoformat(record.shown_at).timestamp(),
                                          PENDING_TTL_S, "*" if sequence is None else sequence])
        except Exception as exc:  # noqa: BLE001 - any failure of the queue falls back to the database
            logger.warning("exposure queue unavailable (%s): writing the exposure directly", type(exc).__name__)
        else:
            if outcome == -1:
                return False
            if outcome:
                schedule()
            return True
    exposures_write([record])
    return True


def exposures_forget_queued(*, subjects: list[str]) -> None:
    """Drops the pending sets and sequences of these ids (an erasure). What they still have on the queue is
    dropped by the recorder, which never writes an exposure of an erased person (exposures_write)."""
    client = redis()
    if client is not None and subjects:
        client.delete(*(key for subject in subjects for key in (pending_key(subject), sequence_key(subject))))


def exposures_write(records: list[ExposureRecord]) -> int:
    """Writes exposures in one statement; idempotent (a decision id already written is skipped). An exposure of a
    person erased while it waited is not written: its profile is gone, or the id it was sent with is on the
    suppression list. Returns how many were new."""
    suppressed = _subjects_suppressed({r.subject for r in records})
    records = [r for r in records if r.subject not in suppressed]
    if not records:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Exposure._meta.db_table} (decision_id, campaign_id, placement_id, profile_id, subject, "
            "variant, channel, shown_at) SELECT x.decision_id, x.campaign_id, x.placement_id, "
            "x.profile_id, x.subject, x.variant, x.channel, "
            "x.shown_at FROM jsonb_to_recordset(%s::jsonb) AS x(decision_id uuid, campaign_id bigint, "
            "placement_id bigint, profile_id bigint, subject text, variant text, channel text, shown_at timestamptz) "
            "WHERE EXISTS (SELECT 1 FROM campaigns_placement pl WHERE pl.id = x.placement_id) "
            # Profiles are never deleted but by an erasure (a merge keeps the merged one).
            "AND (x.profile_id IS NULL OR EXISTS (SELECT 1 FROM profiles_profile p WHERE p.id = x.profile_id)) "
            "AND (x.campaign_id IS NULL OR EXISTS (SELECT 1 FROM campaigns_campaign c WHERE c.id = x.campaign_id)) "
            "ON CONFLICT (decision_id) DO NOTHING",
            [orjson.dumps(records).decode()])
        return cursor.rowcount


def exposures_record_queued(*, limit: int = RECORD_BATCH) -> int:
    """Moves up to `limit` queued exposures into PostgreSQL, then off the queue and out of the pending sets.
    One recorder at a time (a session lock held until the queue is trimmed; another recorder returns at once),
    and writing is idempotent, so one that dies between its commit and the trim only makes the next one skip
    what is already there. Returns how many it took off the queue."""
    client = redis()
    if client is None:
        return 0
    with session_try_lock(EXPOSURE_RECORDER) as held:
        if not held:
            return 0
        raw = client.lrange(QUEUE, 0, limit - 1)
        if not raw:
            return 0
        records, readable = [], []
        for item in raw:
            try:
                records.append(ExposureRecord(**orjson.loads(item)))
                readable.append(item)
            except (orjson.JSONDecodeError, TypeError) as exc:
                logger.error("unreadable queued exposure dropped: %s", type(exc).__name__)
        with transaction.atomic():
            xact_lock(CONVERSION_ATTRIBUTION)
            exposures_write(records)
            # Goal events the pipeline processed while these waited are attributed now.
            conversions_for_recorded(decision_ids=[r.decision_id for r in records],
                                     campaign_ids=[r.campaign_id for r in records if r.campaign_id is not None])
        pipe = client.pipeline(transaction=False)
        pipe.ltrim(QUEUE, len(raw), -1)
        for payload, record in zip(readable, records):
            pipe.zrem(record.counted_as, payload)
        pipe.execute()
    return len(raw)


def exposures_follow_people(*, merges: list[tuple[int, int]], sent: dict[str, int]) -> int:
    """The pipeline's step, inside its batch's transaction: exposures follow their person, so caps, stickiness,
    exclusivity and results see one person where identity resolution does. Those of a profile merged away move to
    its survivor (`merges`: (merged, survivor) pairs), and a first visit's, recorded without a profile, join the
    profile that now holds the id they were decided by (`sent`: each id a batch's event sent, as exposures keep it,
    with the live profile it resolved to). One statement; returns how many exposures moved."""
    if not merges and not sent:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH merged AS (UPDATE {Exposure._meta.db_table} e SET profile_id = m.survivor "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS m(merged, survivor) WHERE e.profile_id = m.merged "
            f"RETURNING 1), identified AS (UPDATE {Exposure._meta.db_table} e SET profile_id = s.profile_id "
            "FROM unnest(%s::text[], %s::bigint[]) AS s(subject, profile_id) WHERE e.profile_id IS NULL "
            "AND e.subject = s.subject RETURNING 1) "
            "SELECT (SELECT count(*) FROM merged) + (SELECT count(*) FROM identified)",
            [[m for m, _ in merges], [s for _, s in merges], list(sent), list(sent.values())])
        return cursor.fetchone()[0]


def exposures_pending(*, key: str) -> list[ExposureRecord]:
    """The queued, not yet recorded exposures of a pending set (a person's), for caps. Empty when Redis is missing
    or does not answer: the recorded ones still count."""
    client = redis()
    if client is None:
        return []
    try:
        found = client.zrange(key, 0, -1)
    except Exception as exc:  # noqa: BLE001 - caps fall back to what PostgreSQL holds
        logger.warning("pending exposures unreadable (%s)", type(exc).__name__)
        return []
    return [ExposureRecord(**orjson.loads(payload)) for payload in found]


def _subjects_suppressed(subjects: set[str]) -> set[str]:
    """Of ids a request sent ("user_id:..."), those of erased people (the suppression list): none while it is
    empty."""
    sent = {}
    for subject in subjects:
        kind, _, value = subject.partition(":")
        if kind in ("user_id", "anonymous_id"):
            sent[(kind, identifier_normalise(kind, value))] = subject
    found = identifiers_suppressed(identifiers=list(sent))
    return {sent[identifier] for identifier in found}


def new_decision_id() -> str:
    return str(uuid.uuid4())
