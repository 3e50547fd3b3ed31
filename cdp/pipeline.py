"""The pipeline: claim a batch of pending events and run each app's step over the whole batch, in order.

a shared lock against the exposure recorder (campaigns' attribution) -> consent gate (suppression list) ->
identity resolution, traits, counters and the privacy regime (consent's rule, registered at start-up) -> consent
carried across merges -> consent signals of the messages -> rectifications completed -> memberships follow merges,
realtime segments re-evaluated for the touched profiles -> campaigns' exposures follow merges and logins, then goal
events are attributed to them (triggered actions arrive with their work).
All in one transaction.
"""
import logging

from django.conf import settings
from django.db import DataError, IntegrityError, OperationalError, connection, transaction

from campaigns.services.conversions import (GoalEvent, conversions_after_batch, conversions_batch_begin,
                                             subjects_sent)
from campaigns.services.exposures import exposures_follow_people
from consent.services.ledger import CollectedEvent, consent_apply_collected, consent_merge
from consent.services.privacy import privacy_rectifications_processed
from consent.services.suppression import suppressed_events
from profiles.services.ingest import events_discard
from profiles.services.identity import (ClaimedEvent, ResolveOutcome, event_set_aside, events_claim_pending,
                                       events_resolve)
from segments.services.membership import (BatchChanges, WrittenEvent, memberships_follow_merges,
                                          segments_after_batch)

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 5


def pipeline_drain(*, max_batches: int | None = None, batch_size: int | None = None) -> int:
    """Processes batches until none wait (or max_batches); returns how many events it processed.

    Events a crashed worker left behind below this drain's position are taken by the next drain.
    """
    total, after_id, batches = 0, 0, 0
    while max_batches is None or batches < max_batches:
        processed, after_id = _process_batch(batch_size=batch_size, after_id=after_id)
        if not processed:
            break
        total += processed
        batches += 1
    return total


def pipeline_process_batch(*, batch_size: int | None = None) -> int:
    """Processes the oldest pending batch; returns how many events it processed (0 when none wait)."""
    return _process_batch(batch_size=batch_size)[0]


def _process_batch(*, batch_size: int | None = None, after_id: int = 0) -> tuple[int, int]:
    """Processes one batch in one transaction; returns how many events it processed (0 when none wait).

    A worker that dies mid-batch rolls the transaction back, so the batch is claimed again later.
    Two workers whose batches touch the same profiles can deadlock; PostgreSQL aborts one, which retries.
    A batch that fails otherwise is retried in halves, so one bad event is found and set aside with its
    error instead of blocking every event behind it.
    """
    batch_size = batch_size or settings.PIPELINE_BATCH_SIZE
    # Alone in its transaction, a batch writes only what its queued events determine (see events_claim_pending).
    alone = not connection.in_atomic_block
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                conversions_batch_begin()
                events = claimed = events_claim_pending(
                    limit=batch_size, after_id=after_id, commit_asynchronously=alone)
                if not events:
                    return 0, after_id
                last_id = events[-1].id
                # The consent gate: events of erased subjects are dropped before they create anything.
                dropped = suppressed_events(payloads={e.id: e.payload for e in events})
                if dropped:
                    events_discard(event_ids=sorted(dropped))
                    events = [e for e in events if e.id not in dropped]
                outcome = events_resolve(events=events)
                _after_resolve(events, outcome)
                # Dropped events count as handled: a rectification of an erased subject must not wait forever.
                privacy_rectifications_processed(messages=[(e.source_id, e.message_id) for e in claimed])
                return len(events) + len(dropped), last_id
        except OperationalError as exc:
            if "deadlock" not in str(exc) or attempt == MAX_ATTEMPTS:
                raise
            logger.warning("pipeline batch deadlocked, retrying (attempt %s)", attempt)
        except (DataError, IntegrityError) as exc:
            # Data the database refuses is a property of some event, not of the moment: retrying won't help.
            return _isolate_failure(batch_size, after_id, exc)
    return 0, after_id


def _after_resolve(events: list[ClaimedEvent], outcome: ResolveOutcome) -> None:
    # Merges before signals: a choice carried over from a merged profile is older than the signals of this batch.
    consent_merge(merges=outcome.merged)
    recorded = consent_apply_collected(events=[
        CollectedEvent(e.id, e.message_id, outcome.profile_of[e.id], e.timestamp, e.payload)
        for e in events if e.id in outcome.profile_of])
    # After consent: a segment that reads consent sees this batch's choices.
    memberships_follow_merges(merges=outcome.merged)
    segments_after_batch(changes=BatchChanges(
        events=[WrittenEvent(e.id, e.timestamp, outcome.profile_of[e.id], e.event)
                for e in events if e.type == "track" and e.id in outcome.profile_of],
        created=outcome.created, traits=outcome.traits_changed,
        identifiers=outcome.identifiers_changed, consent=frozenset(entry.profile_id for entry in recorded),
        survivors=frozenset(survivor for _, survivor in outcome.merged)))
    # A first visit's exposures wait for the id they were decided by to reach a profile: only ids new to one here.
    gained = outcome.created | outcome.identifiers_changed
    exposures_follow_people(merges=outcome.merged, sent=sorted({
        subject for e in events if outcome.profile_of.get(e.id) in gained for subject in subjects_sent(e.payload)}))
    conversions_after_batch(events=[
        GoalEvent(e.id, outcome.profile_of[e.id], e.event, e.timestamp, e.payload)
        for e in events if e.type == "track" and e.id in outcome.profile_of])


def _describe(exc: Exception) -> str:
    """What went wrong, without the values: PostgreSQL's detail line quotes the row (an email, say), and the
    reason is kept with the event."""
    diag = getattr(exc.__cause__, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return f"{type(exc).__name__}: {primary}" if primary else type(exc).__name__


def _isolate_failure(batch_size: int, after_id: int, exc: Exception) -> tuple[int, int]:
    if batch_size > 1:
        return _process_batch(batch_size=batch_size // 2, after_id=after_id)
    with transaction.atomic():
        event_id = event_set_aside(reason=_describe(exc), after_id=after_id)
    logger.error("pipeline set event %s aside: %s", event_id, type(exc).__name__)
    return (1, event_id) if event_id else (0, after_id)
