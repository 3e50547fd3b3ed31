"""Recording what decisions showed, off the request's path: a decision queues its exposure in Redis and answers;
a recorder moves the queue into PostgreSQL in batches. Until recorded (and a few seconds after), an exposure also
sits in its person's pending set, so frequency caps count it.

Without Redis (the embedded mode, tasks in-process) an exposure is written at once.
"""
from __future__ import annotations

import logging
import time
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
# The campaigns' version: every change moves it, and each process reloads its campaigns when it sees a new one.
VERSION_KEY = "campaigns:snapshot-version"
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


# Queues an exposure in one round trip, unless the decision may have missed something (then nothing is queued):
# the campaigns changed (ARGV[5], the version it decided by, no longer holds), or an exposure of the same person is
# pending that its read of PostgreSQL may not hold. ARGV[4] says how the decision read the person: "fast", from
# PostgreSQL alone, so any pending exposure under an id it sent is one too many; "seq:<n>", with their pending
# exposures as of queueing sequence n, which must still hold; "any", no check. On refusal it answers what the
# decision needs to be taken again, in the same round trip: {version, sequence, pending entries...}. Otherwise the
# exposure goes onto the queue and into its person's pending set (with its expiry), the sequence moves on, and it
# answers whether the recorder needs a kick (at most one per second): 1 when it does.
# KEYS: the queue, the kick's key, the first id's sequence, the version, then each id's pending set (the first's
# takes the exposure).
_QUEUE_SCRIPT = Script("""
local version = redis.call('GET', KEYS[4]) or ''
local sequence = redis.call('GET', KEYS[3]) or ''
local refused = ARGV[5] ~= '*' and version ~= ARGV[5]
if not refused and ARGV[4] == 'fast' then
  for i = 5, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 1 then refused = true end
  end
elseif not refused and ARGV[4] ~= 'any' then
  refused = ('seq:' .. sequence) ~= ARGV[4]
end
if refused then
  local reply = {version, sequence}
  for i = 5, #KEYS do
    for _, entry in ipairs(redis.call('ZRANGE', KEYS[i], 0, -1)) do table.insert(reply, entry) end
  end
  return reply
end
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[5], ARGV[3])
if redis.call('SET', KEYS[2], 1, 'NX', 'EX', 1) then return 1 end
return 0
""")
# A sequence matters only between a decision's read and its queueing.
SEQUENCE_TTL_S = 60
# A recorded exposure stays in its pending set this long: a decision that read PostgreSQL just before the recorder
# committed it and queues just after still finds it there (see exposures_record_queued).
PENDING_GRACE_S = 5


@dataclass(frozen=True)
class QueueRefused:
    """What the queue answered instead of queueing: the campaigns' version, the first id's queueing sequence, and
    the exposures pending under the ids sent (see _QUEUE_SCRIPT)."""

    version: str
    sequence: str
    pending: list[ExposureRecord]


def exposure_queue(*, record: ExposureRecord, schedule, subjects: list[str] | None = None, check: str = "any",
                   version: str = "*") -> QueueRefused | None:
    """Queues one exposure (and counts it as pending for its person); `schedule` queues the recorder. A decision
    passes the ids it was sent (`subjects`, the record's first), how it read the person (`check`: "fast", "seq:<n>"
    or "any") and the campaigns' `version` it decided by: when the queue refuses it (_QUEUE_SCRIPT), the answer
    is what taking it again needs. When Redis is missing or fails, the exposure is written to PostgreSQL at once:
    a failure to queue must not lose it. None when it is queued or written."""
    client = redis()
    if client is not None:
        payload = orjson.dumps(record)  # orjson writes a dataclass as its fields, natively
        subjects = subjects or [record.subject]
        try:
            answer = _QUEUE_SCRIPT(
                client, keys=[QUEUE, _SCHEDULED, sequence_key(subjects[0]), VERSION_KEY,
                              *(pending_key(subject) for subject in subjects)],
                args=[payload, datetime.fromisoformat(record.shown_at).timestamp(), PENDING_TTL_S, check, version,
                      SEQUENCE_TTL_S])
        except Exception as exc:  # noqa: BLE001 - any failure of the queue falls back to the database
            logger.warning("exposure queue unavailable (%s): writing the exposure directly", type(exc).__name__)
        else:
            if isinstance(answer, list):
                return QueueRefused(answer[0].decode(), answer[1].decode(),
                                    [ExposureRecord(**orjson.loads(entry)) for entry in answer[2:]])
            if answer:
                schedule()
            return None
    exposures_write([record])
    return None


def exposures_forget_queued(*, subjects: list[str]) -> None:
    """Drops the pending sets and sequences of these ids (an erasure). What they still have on the queue is
    dropped by the recorder, which never writes an exposure of an erased person (exposures_write)."""
    client = redis()
    if client is not None and subjects:
        client.delete(*(key for subject in subjects for key in (pending_key(subject), sequence_key(subject))))


def _profile_of_subject(alias: str) -> str:
    """The live profile holding the id the exposure (or record) `alias` was decided by ("user_id:..." or
    "anonymous_id:..."), as a subquery."""
    return ("SELECT i.profile_id FROM profiles_identifier i JOIN profiles_profile p ON p.id = i.profile_id "
            f"AND p.merged_into_id IS NULL WHERE i.type = split_part({alias}.subject, ':', 1) "
            f"AND i.value = substr({alias}.subject, strpos({alias}.subject, ':') + 1) LIMIT 1")


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
            # A profile merged away while its exposure waited stands for its survivor (merges point a tombstone at
            # the live survivor); a first visit's exposure recorded after its id reached a profile is that profile's.
            "coalesce((SELECT coalesce(p.merged_into_id, p.id) FROM profiles_profile p WHERE p.id = x.profile_id), "
            f"({_profile_of_subject('x')})), x.subject, x.variant, x.channel, "
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
        recorded: dict[str, list[bytes]] = {}
        for payload, record in zip(readable, records):
            recorded.setdefault(record.counted_as, []).append(payload)
        client.ltrim(QUEUE, len(raw), -1)
        if recorded:
            _RECORDED_SCRIPT(client, keys=list(recorded), args=[
                time.time(), PENDING_GRACE_S,
                *(item for payloads in recorded.values() for item in (len(payloads), *payloads))])
    return len(raw)


# Pending entries are scored by when they were shown; once recorded, by RECORDED plus when they were recorded, so
# the grace runs from the recording, however long the entry waited on the queue, and the two kinds never mix.
RECORDED = 10_000_000_000
# After recording, for each pending set touched (KEYS[i]; ARGV: the time now, the grace, then for each set the
# number of its entries just recorded and those entries): those entries are marked recorded, recorded ones older
# than the grace go, and a set holding nothing that still waits on the queue expires after the grace.
_RECORDED_SCRIPT = Script("""
local now, grace, at = tonumber(ARGV[1]), tonumber(ARGV[2]), 3
for _, key in ipairs(KEYS) do
  local count = tonumber(ARGV[at])
  for j = at + 1, at + count do redis.call('ZADD', key, 'XX', RECORDED + now, ARGV[j]) end
  at = at + count + 1
  redis.call('ZREMRANGEBYSCORE', key, RECORDED, RECORDED + now - grace)
  if #redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. RECORDED, 'LIMIT', 0, 1) == 0 then
    redis.call('EXPIRE', key, grace)
  end
end
return 0
""".replace("RECORDED", str(RECORDED)))


def exposures_follow_people(*, merges: list[tuple[int, int]], sent: list[str]) -> int:
    """The pipeline's step, inside its batch's transaction: exposures follow their person, so caps, stickiness,
    exclusivity and results see one person where identity resolution does. Those of a profile merged away move to
    its survivor (`merges`: (merged, survivor) pairs), and a first visit's, recorded without a profile, join the
    profile that now holds the id they were decided by (`sent`: ids, as exposures keep them, that may have reached
    a profile in this batch; one that reached none, a blocked value say, links nothing). One recorded later is
    given its profile as it is written. One statement; returns how many exposures moved."""
    if not merges and not sent:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH merged AS (UPDATE {Exposure._meta.db_table} e SET profile_id = m.survivor "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS m(merged, survivor) WHERE e.profile_id = m.merged "
            f"RETURNING 1), identified AS (UPDATE {Exposure._meta.db_table} x SET profile_id = owner.profile_id "
            f"FROM {Exposure._meta.db_table} y CROSS JOIN LATERAL ({_profile_of_subject('y')}) "
            "owner WHERE x.id = y.id AND y.profile_id IS NULL AND y.subject = ANY(%s::text[]) RETURNING 1) "
            "SELECT (SELECT count(*) FROM merged) + (SELECT count(*) FROM identified)",
            [[m for m, _ in merges], [s for _, s in merges], sent])
        return cursor.fetchone()[0]


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
