"""Identity resolution over a whole batch of events: attach, create or merge profiles, then traits and counters.

Concurrency: every identifier of the batch is covered by a transaction-level advisory lock on its hash
bucket (taken in sorted order), and every profile the batch touches is locked FOR UPDATE before its
identifiers are read. Together with the unique (type, value) constraint this keeps one identity on one
profile when several workers run at once.
"""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from django.conf import settings
from django.db import OperationalError, connection
from django.utils import timezone
from psycopg.types.datetime import TimestamptzLoader

from profiles.common.locks import IDENTITY_BUCKETS, xact_lock
from profiles.messages import (message_identifiers, message_traits, normalise_email, normalise_phone,
                               same_trait_value)
from profiles.models import Identifier, IdentityRule, MergeRecord, Profile, Source, TraitChange

UNLIMITED = None
DEFAULT_PRIORITY = 50
MAX_LOCK_ROUNDS = 20


@contextmanager
def _cursor():
    """A cursor that parses timestamps with psycopg's C loader.

    Django registers a timezone-aware loader written in Python; a batch parses tens of thousands of timestamps.
    The connection's time zone is UTC under Django, so the values are the same aware datetimes.
    """
    with connection.cursor() as cursor:
        cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        yield cursor


@dataclass(slots=True)
class ClaimedEvent:
    id: int
    source_id: int
    message_id: str
    type: str
    timestamp: datetime
    payload: dict
    # The track event's name (the page or screen name for those), "" for other types.
    event: str = ""


@dataclass
class Rules:
    priority: dict[str, int]
    maximum: dict[str, int | None]
    blocked: dict[str, set[str]]

    def filter(self, keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The keys no rule blocks."""
        return [(t, v) for t, v in keys if self.allows(t, v)]

    @property
    def blocked_any(self) -> bool:
        """Whether any value is blocked at all: most installations block none, and skip the check per event."""
        return any(self.blocked.values())

    def allows(self, kind: str, value: str) -> bool:
        blocked = self.blocked.get(kind)
        everywhere = self.blocked.get("*")
        if not blocked and not everywhere:
            return True
        value = value.lower()
        return not (blocked and value in blocked) and not (everywhere and value in everywhere)

    def rank(self, kind: str) -> int:
        return self.priority.get(kind, DEFAULT_PRIORITY)


def rules_load() -> Rules:
    rules = Rules({}, {}, {})
    for rule in IdentityRule.objects.all():
        rules.priority[rule.identifier_type] = rule.priority
        rules.maximum[rule.identifier_type] = rule.max_per_profile
        rules.blocked[rule.identifier_type] = {str(v).strip().lower() for v in rule.blocked_values}
    return rules


def events_claim_pending(*, limit: int, after_id: int = 0, commit_asynchronously: bool = False) -> list[ClaimedEvent]:
    """Claims up to `limit` queued events with ids above `after_id` for this transaction.

    Other workers skip what this one holds. A draining worker passes the last id it claimed, so it does
    not walk again over index entries of events it has just moved out of the queue (until vacuum removes them).
    With commit_asynchronously, the transaction's commit does not wait for its WAL flush: right when everything
    it writes derives from the claimed events, which stay queued until it commits, so a commit lost to a server
    crash is redone from the queue (never when the transaction also accepted those events).
    """
    with _cursor() as cursor:
        # The queue's primary key walked in id order is the right plan whatever the statistics say; with stale
        # statistics (a burst of inserts, autovacuum behind) PostgreSQL may pick a bitmap scan that reads and
        # sorts every queued row, payloads included, on every claim.
        cursor.execute("SET LOCAL enable_bitmapscan = off"
                       + ("; SET LOCAL synchronous_commit = off" if commit_asynchronously else ""))
        # Raw SQL to parse payloads with orjson: JSONField decodes with json.loads, the batch's largest cost.
        cursor.execute(
            "SELECT id, source_id, message_id, type, timestamp, payload::text, event FROM profiles_pendingevent "
            "WHERE id > %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            [after_id, limit],
        )
        return [ClaimedEvent(i, s, m, t, ts, orjson.loads(p), e) for i, s, m, t, ts, p, e in cursor.fetchall()]


def event_set_aside(*, reason: str, after_id: int = 0) -> int | None:
    """Moves the oldest claimable queued event to the events, without a profile and with the reason it failed,
    so it stops blocking the queue; returns its id."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM profiles_pendingevent WHERE id > %s ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
                       [after_id])
        row = cursor.fetchone()
    if row is None:
        return None
    _move_processed([(row[0], None)], timezone.now(), error=reason[:2000])
    return row[0]


_regime_rules: list[Callable[[dict], str]] = []


def profile_regime_rule_register(rule: Callable[[dict], str]) -> None:
    """Registers the rule that names a profile's privacy regime from its traits ("" for none). Consent owns the
    rule and registers it at start-up; identity resolution applies it to every profile whose traits a batch
    changes and stores the result in the same UPDATE that writes the traits, so a profile is written once."""
    _regime_rules[:] = [rule]


def profiles_lock(*, profile_ids: list[int]) -> None:
    """Locks these profiles FOR UPDATE until the transaction ends, in id order (as the pipeline does), so a batch
    that touches them waits, or has committed before this returns."""
    list(Profile.objects.select_for_update().filter(id__in=profile_ids).order_by("id").values_list("id", flat=True))


def _bucket(key: tuple[str, str]) -> int:
    kind, value = key
    digest = hashlib.blake2b(f"{kind}\x00{value}".encode(), digest_size=4).digest()
    return int.from_bytes(digest) % IDENTITY_BUCKETS.size


def _lock_identities(keys: set[tuple[str, str]]) -> None:
    if keys:
        xact_lock(IDENTITY_BUCKETS, {_bucket(k) for k in keys})


@dataclass(frozen=True)
class ResolveOutcome:
    """What a resolved batch did, for the pipeline's next steps: the live profile of each event, every existing
    profile merged away, as (merged profile, survivor), and the live profiles it created, whose traits changed
    value (with the top-level keys that changed) and whose identifiers changed."""

    profile_of: dict[int, int]
    merged: list[tuple[int, int]]
    created: frozenset[int] = frozenset()
    traits_changed: dict[int, frozenset[str]] = field(default_factory=dict)
    identifiers_changed: frozenset[int] = frozenset()


@dataclass
class _Person:
    id: int | None
    order: tuple
    traits: dict
    trait_times: dict
    limited: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # Whether `limited` holds all the profile's identifiers of limited types (always, for a new profile).
    limits_known: bool = False
    is_new: bool = False
    regime: str = ""
    event_count: int = 0
    event_counts: dict[str, int] = field(default_factory=dict)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    touched: bool = False
    # Whether this batch changed traits or their times; an UPDATE leaves the stored ones alone otherwise.
    traits_dirty: bool = False
    # Events and identifiers this batch gave the profile, so a merge record counts them as moved too.
    batch_events: int = 0
    batch_identifiers: int = 0


class _Resolver:
    """In-memory view of the profiles a batch touches; flushed to the database with set-based statements."""

    def __init__(self, rules: Rules, now: datetime):
        self.rules = rules
        self.now = now
        self.limited_types = {k for k, v in rules.maximum.items() if v is not UNLIMITED}
        self.owner: dict[tuple[str, str], int] = {}
        self.parent: dict[int, int] = {}
        self.people: dict[int, _Person] = {}
        self.new_identifiers: list[tuple[str, str, int, int, datetime]] = []
        self.merges: list[tuple[int, int, ClaimedEvent, list[str], int, int]] = []
        self.refusals: list[tuple[int, int | None, ClaimedEvent, list[str], str]] = []
        self.event_person: dict[int, int] = {}
        self.trait_updates: list[tuple[int, str, object, str, int]] = []
        # Identifiers a rectification replaced: (profile, type, value), deleted before the new ones are inserted.
        self.released: list[tuple[int, str, str]] = []
        self._next_temp = -1

    def find(self, pid: int) -> int:
        while pid in self.parent:
            pid = self.parent[pid]
        return pid

    def new_person(self) -> int:
        pid = self._next_temp
        self._next_temp -= 1
        self.people[pid] = _Person(None, (self.now, -pid), {}, {}, is_new=True, limits_known=True)
        return pid


    def release_replaced(self, event: ClaimedEvent, idents: list[tuple[str, str]], region: str) -> None:
        """A rectification's identify: on the profile it addresses (by user or anonymous id), the identifier of
        the email or phone trait's current value is released when the message sets another value, so the old
        value stops finding the profile and the new one has room under the type's maximum."""
        addressed = {self.find(self.owner[k]) for k in idents if k[0] in ("user_id", "anonymous_id")
                     and k in self.owner}
        new = dict(k for k in idents if k[0] in ("email", "phone"))
        for pid in addressed:
            person = self.people[pid]
            for kind, value in new.items():
                current = person.traits.get(kind)
                if not isinstance(current, str):
                    continue
                old = normalise_email(current) if kind == "email" else normalise_phone(current, region)
                if not old or old == value:
                    continue
                if (kind, old) in self.owner and self.find(self.owner[(kind, old)]) != pid:
                    continue  # another profile's: not this profile's to release
                self.owner.pop((kind, old), None)
                person.limited[kind].discard(old)
                self.released.append((pid, kind, old))

    def _fits(self, pids: set[int], extra: list[tuple[str, str]]) -> str | None:
        """None when these profiles plus extra identifiers respect every maximum; else the reason why not."""
        limited = self.limited_types
        if len(pids) < 2 and not any(t in limited for t, _ in extra):
            return None
        for pid in pids:
            self._require_limits(pid)
        for kind in limited:
            values = set().union(*(self.people[p].limited.get(kind, set()) for p in pids))
            values |= {v for t, v in extra if t == kind}
            if len(values) > self.rules.maximum[kind]:
                return f"{kind} limit {self.rules.maximum[kind]} per profile would be exceeded ({len(values)})"
        return None

    def _require_limits(self, pid: int) -> None:
        if not self.people[pid].limits_known:
            # events_resolve loads them for every profile a rule can apply to; this is a bug, not bad data.
            raise RuntimeError(f"identity rules checked on profile {self.people[pid].id} without its identifiers")

    def _attach(self, pid: int, idents: list[tuple[str, str]], event: ClaimedEvent) -> None:
        person = self.people[pid]
        for kind, value in idents:
            maximum = self.rules.maximum.get(kind)
            if maximum is not UNLIMITED:
                self._require_limits(pid)
                if len(person.limited[kind]) >= maximum:
                    self.refusals.append((pid, None, event, [f"{kind}:{value}"],
                                          f"{kind} limit {maximum} per profile reached; identifier not added"))
                    continue
                person.limited[kind].add(value)
            self.owner[(kind, value)] = pid
            person.batch_identifiers += 1
            self.new_identifiers.append((kind, value, pid, event.id, event.timestamp))

    def resolve(self, event: ClaimedEvent, idents: list[tuple[str, str]], link_only: list[tuple[str, str]]) -> int:
        known = {self.find(self.owner[k]) for k in idents + link_only if k in self.owner}
        if link_only and not any(k in self.owner for k in link_only):
            idents = idents + [("anonymous_id", link_only[0][1])]
        unowned = [k for k in idents if k not in self.owner]
        # First whether the known profiles may merge, then whether the new identifiers fit the result.
        problem = self._fits(known, []) if len(known) > 1 else None
        if problem is None:
            if known:
                survivor = min(known, key=lambda p: self.people[p].order)
                linking = sorted(f"{t}:{v}" for t, v in idents + link_only if t and (t, v) in self.owner)
                for other in sorted(known - {survivor}, key=lambda p: self.people[p].order):
                    self._merge(survivor, other, event, linking)
                known = {survivor}
                problem = self._fits(known, unowned)
            if problem is None:
                survivor = survivor if known else self.new_person()
                self._attach(survivor, unowned, event)
                return survivor
        # The merge would break a rule: the identifier with the highest priority decides where the event goes.
        anchor = max(idents + [k for k in link_only if k in self.owner], key=lambda k: self.rules.rank(k[0]))
        if anchor in self.owner:
            target = self.find(self.owner[anchor])
        else:
            target = self.new_person()
        self._attach(target, unowned, event)
        for other in sorted(known - {target}):
            shared = sorted(f"{t}:{v}" for t, v in idents + link_only if self.owner.get((t, v)) is not None
                            and self.find(self.owner[(t, v)]) == other)
            self.refusals.append((target, other, event, shared, problem))
        return target

    def _merge(self, survivor: int, other: int, event: ClaimedEvent, linking: list[str]) -> None:
        into, gone = self.people[survivor], self.people[other]
        for kind, values in gone.limited.items():
            into.limited[kind] |= values
        for key, value in gone.traits.items():
            if key not in into.trait_times or gone.trait_times.get(key, "") > into.trait_times[key]:
                self.trait_updates.append((survivor, key, value, gone.trait_times.get(key, ""), event.id))
        into.event_count += gone.event_count
        for kind, count in gone.event_counts.items():
            into.event_counts[kind] = into.event_counts.get(kind, 0) + count
        for seen in (gone.first_seen,):
            if seen and (into.first_seen is None or seen < into.first_seen):
                into.first_seen = seen
        if gone.last_seen and (into.last_seen is None or gone.last_seen > into.last_seen):
            into.last_seen = gone.last_seen
        gone.event_count = 0
        gone.event_counts = {}
        self.parent[other] = survivor
        into.touched = gone.touched = True
        self.merges.append((survivor, other, event, linking, gone.batch_events, gone.batch_identifiers))
        into.batch_events += gone.batch_events
        into.batch_identifiers += gone.batch_identifiers


def _load_profiles(resolver: _Resolver, profile_ids: set[int]) -> set[int]:
    """Locks and loads these profiles; returns those that are gone or merged meanwhile (they are not loaded)."""
    with _cursor() as cursor:
        cursor.execute(
            "SELECT id, created_at, traits::text, trait_times::text, event_count, event_counts::text, "
            "first_seen, last_seen, merged_into_id, regime FROM profiles_profile WHERE id = ANY(%s::bigint[]) "
            "ORDER BY id FOR UPDATE",
            [_int_array(profile_ids)],
        )
        rows = [(i, c, orjson.loads(t), orjson.loads(tt), n, orjson.loads(ec), f, la, m, g)
                for i, c, t, tt, n, ec, f, la, m, g in cursor.fetchall()]
    live = set()
    for pid, created_at, traits, trait_times, count, counts, first_seen, last_seen, merged_into, regime in rows:
        if merged_into is None:
            live.add(pid)
            resolver.people[pid] = _Person(pid, (created_at, pid), traits, trait_times, event_count=count,
                                           event_counts=counts, first_seen=first_seen, last_seen=last_seen,
                                           regime=regime)
    return set(profile_ids) - live


def _profiles_at_stake(resolver: _Resolver, extracted: list) -> set[int]:
    """The loaded profiles an identity rule can apply to in this batch.

    A rule is checked on a profile only when an event could merge it with another profile or give it a new
    identifier, that is, when the event also carries a key the profile does not own. Profiles that merely
    receive events on keys they already hold (most traffic) need no check, so their identifiers are not read.
    """
    owner = resolver.owner
    at_stake: set[int] = set()
    for _, idents, link_only in extracted:
        keys = idents + link_only
        owners = {owner[k] for k in keys if k in owner}
        if len(owners) > 1 or (owners and any(k not in owner for k in keys)):
            at_stake |= owners
    return at_stake


def _load_limits(resolver: _Resolver, profile_ids: set[int]) -> None:
    """Reads the identifiers of limited types (user_id, email, ...) that these profiles hold."""
    limited = sorted(resolver.limited_types)
    if profile_ids and limited:
        with connection.cursor() as cursor:
            # A lateral subquery that cannot be flattened: one index probe per profile whatever the planner's
            # statistics say (with stale ones it scans the whole table instead).
            cursor.execute(
                "SELECT p.id, i.type, i.value FROM unnest(%s::bigint[]) AS p(id) CROSS JOIN LATERAL "
                "(SELECT type, value FROM profiles_identifier WHERE profile_id = p.id "
                "AND type = ANY(%s::text[]) OFFSET 0) i", [_int_array(profile_ids), limited])
            held = cursor.fetchall()
        for pid, kind, value in held:
            resolver.people[pid].limited[kind].add(value)
    for pid in profile_ids:
        resolver.people[pid].limits_known = True


def _lookup(keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int]]:
    """The identifiers that exist among these keys: (type, value) -> (identifier id, profile id)."""
    with connection.cursor() as cursor:
        # One unique-index probe per key, as a lateral subquery the planner cannot flatten: given a join instead,
        # and stale statistics, it hashes the whole identifier table for every batch.
        cursor.execute(
            "SELECT k.t, k.v, i.id, i.profile_id FROM json_to_recordset(%s::json) AS k(t text, v text) "
            "CROSS JOIN LATERAL (SELECT id, profile_id FROM profiles_identifier WHERE type = k.t AND value = k.v "
            "OFFSET 0) i",
            [_json([{"t": t, "v": v} for t, v in keys])],
        )
        return {(t, v): (i, pid) for t, v, i, pid in cursor.fetchall()}


def _reread(owned: dict[tuple[str, str], tuple[int, int]]) -> dict[tuple[str, str], tuple[int, int]]:
    """The same identifiers read again by id: where they are now, after our profile locks."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, profile_id FROM profiles_identifier WHERE id = ANY(%s::bigint[])",
                       [_int_array(i for i, _ in owned.values())])
        now = dict(cursor.fetchall())
    return {key: (i, now[i]) for key, (i, _) in owned.items() if i in now}


def events_resolve(*, events: list[ClaimedEvent]) -> ResolveOutcome:
    """Resolves a claimed batch (inside the caller's transaction) and moves its events out of the queue.

    Guarantees: every event ends on one live profile; identifiers never point at a merged profile;
    processing the same events again changes nothing (they are no longer queued).
    """
    now = timezone.now()
    rules = rules_load()
    region = settings.PHONE_DEFAULT_REGION
    extracted = []
    keys: set[tuple[str, str]] = set()
    blocking = rules.blocked_any
    for event in events:
        idents, link_only = message_identifiers(event.payload, default_region=region)
        if blocking:
            idents, link_only = rules.filter(idents), rules.filter(link_only)
        extracted.append((event, idents, link_only))
        keys.update(idents)
        keys.update(link_only)
    _lock_identities(keys)

    resolver = _Resolver(rules, now)
    owned = _lookup(keys)
    for _ in range(MAX_LOCK_ROUNDS):
        missing = {pid for _, pid in owned.values()} - set(resolver.people)
        if not missing:
            break
        # Only a merge moves identifiers, and it leaves the merged profile a tombstone. So when every profile
        # we lock is live, nothing we found has moved; when one is not, read our identifiers again. Keys that
        # had no owner cannot gain one meanwhile: only the holder of a key's lock bucket inserts it.
        if _load_profiles(resolver, missing):
            owned = _reread(owned)
    else:
        # Each round follows merges other workers committed; this many in one batch means something else moves
        # identifiers without leaving tombstones. Raising rolls the batch back; the sweep claims it again.
        raise OperationalError(f"identifier owners still moving after {MAX_LOCK_ROUNDS} rounds")
    resolver.owner.update({key: pid for key, (_, pid) in owned.items()})
    _load_limits(resolver, _profiles_at_stake(resolver, extracted))
    replacing = set(Source.objects.filter(replaces_identifiers=True).values_list("id", flat=True))

    for event, idents, link_only in extracted:
        if not idents and not link_only:
            continue
        if event.source_id in replacing and event.type == "identify":
            resolver.release_replaced(event, idents, region)
        pid = resolver.resolve(event, idents, link_only)
        resolver.event_person[event.id] = pid
        resolver.people[pid].batch_events += 1
        traits = message_traits(event.payload)
        stamp = event.timestamp.isoformat()
        for key, value in traits.items():
            resolver.trait_updates.append((pid, key, value, stamp, event.id))

    return _flush(resolver, events, now)


def _flush(r: _Resolver, events: list[ClaimedEvent], now: datetime) -> ResolveOutcome:
    # 1. Create every new profile, merged-away ones included, so merge records can name them.
    new_ids = sorted((pid for pid, p in r.people.items() if p.is_new), reverse=True)
    real = dict(zip(new_ids, _create_profiles(len(new_ids), now)))
    for pid, person in r.people.items():
        person.id = real.get(pid, person.id)

    def final(pid: int) -> int:
        return r.people[r.find(pid)].id

    # 2. Counters and traits per surviving profile, in message-time order, latest wins.
    for event in events:
        pid = r.event_person.get(event.id)
        if pid is None:
            continue
        person = r.people[r.find(pid)]
        person.touched = True
        person.event_count += 1
        person.event_counts[event.type] = person.event_counts.get(event.type, 0) + 1
        if person.first_seen is None or event.timestamp < person.first_seen:
            person.first_seen = event.timestamp
        if person.last_seen is None or event.timestamp > person.last_seen:
            person.last_seen = event.timestamp
    changes = []
    changed_keys: dict[int, set[str]] = defaultdict(set)
    for pid, key, value, stamp, event_id in r.trait_updates:
        person = r.people[r.find(pid)]
        person.touched = True
        if stamp < person.trait_times.get(key, ""):
            continue
        old = person.traits.get(key)
        person.trait_times[key] = stamp
        person.traits_dirty = True
        if key in person.traits and same_trait_value(old, value):
            continue
        person.traits[key] = value
        changed_keys[r.find(pid)].add(key)
        changes.append((person.id, key[:200], old, value, datetime.fromisoformat(stamp) if stamp else now, event_id))

    if _regime_rules:
        for pid in changed_keys:
            r.people[pid].regime = _regime_rules[0](r.people[pid].traits)

    # 3. Merges: move identifiers, events and history of merged profiles; leave a tombstone behind.
    moved_events: Counter = Counter()
    moved_identifiers: Counter = Counter()
    merged_existing = {r.people[o].id: final(o) for _, o, *_ in r.merges}
    if merged_existing:
        pairs = list(merged_existing.items())
        moved_identifiers = _repoint("profiles_identifier", pairs)
        moved_events = _repoint("profiles_event", pairs)
        _repoint("profiles_traitchange", pairs)
        _leave_tombstones(pairs, now)
    records = [
        MergeRecord(outcome=MergeRecord.Outcome.MERGED, into_profile_id=r.people[s].id,
                    other_profile_id=r.people[o].id, reason="shared identifiers: " + ", ".join(link),
                    linking_identifiers=link,
                    moved_identifiers=moved_identifiers.get(r.people[o].id, 0) + batch_identifiers,
                    moved_events=moved_events.get(r.people[o].id, 0) + batch_events, event_id=e.id,
                    message_id=e.message_id, created_at=now)
        for s, o, e, link, batch_events, batch_identifiers in r.merges
    ] + [
        MergeRecord(outcome=MergeRecord.Outcome.REFUSED, into_profile_id=final(t),
                    other_profile_id=final(o) if o is not None else None,
                    reason=problem, linking_identifiers=link, event_id=e.id, message_id=e.message_id,
                    created_at=now)
        for t, o, e, link, problem in r.refusals
    ]
    MergeRecord.objects.bulk_create(records)

    # 4. Identifiers a rectification released, then the new ones, on their surviving profile.
    if r.released:
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM profiles_identifier i USING jsonb_to_recordset(%s::jsonb) AS x(p bigint, t text, v text) "
                "WHERE i.type = x.t AND i.value = x.v AND i.profile_id = x.p",
                [_json([{"p": final(p), "t": t, "v": v} for p, t, v in r.released])])
    _insert_rows(Identifier, ["type", "value", "profile_id", "source_event_id", "first_seen"],
                 [(t, v, final(p), eid, ts) for t, v, p, eid, ts in r.new_identifiers])
    _insert_rows(TraitChange, ["profile_id", "key", "old_value", "new_value", "changed_at", "event_id"], changes)

    # 5. Profiles and events, one statement each.
    survivors = [p for pid, p in r.people.items() if p.touched and r.find(pid) == pid]
    _bulk_update_profiles(survivors, now)
    profile_of = {e.id: final(r.event_person[e.id]) for e in events if e.id in r.event_person}
    _move_processed([(e.id, profile_of.get(e.id)) for e in events], now)
    return ResolveOutcome(
        profile_of=profile_of, merged=sorted(merged_existing.items()),
        created=frozenset(person.id for pid, person in r.people.items() if person.is_new and r.find(pid) == pid),
        traits_changed={r.people[pid].id: frozenset(keys) for pid, keys in changed_keys.items()},
        identifiers_changed=frozenset({final(p) for _, _, p, _, _ in r.new_identifiers}
                                      | {final(p) for p, _, _ in r.released}))


def _leave_tombstones(pairs: list[tuple[int, int]], now: datetime) -> None:
    """Empties merged profiles (traits, and so the regime they named) and points each at its survivor, in one
    statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH m(src, dst) AS (VALUES {', '.join(['(%s, %s)'] * len(pairs))}) "
            "UPDATE profiles_profile SET merged_into_id = m.dst, traits = '{}', trait_times = '{}', regime = '', "
            "event_count = 0, event_counts = '{}', updated_at = %s FROM m WHERE profiles_profile.id = m.src",
            [*(x for pair in pairs for x in pair), now])


def _create_profiles(count: int, now: datetime) -> list[int]:
    """Inserts `count` empty profiles in one statement; returns their ids in creation order."""
    if not count:
        return []
    with connection.cursor() as cursor:
        # Django's bulk_create builds and adapts a model instance per row, JSON defaults included.
        cursor.execute(
            "INSERT INTO profiles_profile (created_at, updated_at, traits, trait_times, computed, event_count, "
            "event_counts) SELECT %s, %s, '{}', '{}', '{}', 0, '{}' FROM generate_series(1, %s) "
            "RETURNING id", [now, now, count])
        return sorted(r[0] for r in cursor.fetchall())


def _repoint(table: str, pairs: list[tuple[int, int]]) -> Counter:
    """Moves rows of merged profiles to their survivors; returns how many rows moved per merged profile."""
    moved: Counter = Counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH moved AS (UPDATE {table} t SET profile_id = m.dst "
            f"FROM json_to_recordset(%s::json) AS m(src bigint, dst bigint) WHERE t.profile_id = m.src "
            f"RETURNING m.src) SELECT src, count(*) FROM moved GROUP BY src",
            [_json([{"src": src, "dst": dst} for src, dst in pairs])],
        )
        moved.update(dict(cursor.fetchall()))
    return moved


def _bulk_update_profiles(people: list[_Person], now: datetime) -> None:
    if not people:
        return
    # Most events change only counters: their profile's traits (and the regime they name) are not sent back.
    rows = [{"id": p.id, "traits": p.traits, "trait_times": p.trait_times, "event_count": p.event_count,
             "event_counts": p.event_counts, "first_seen": p.first_seen, "last_seen": p.last_seen,
             "regime": p.regime} if p.traits_dirty else
            {"id": p.id, "event_count": p.event_count, "event_counts": p.event_counts, "first_seen": p.first_seen,
             "last_seen": p.last_seen} for p in people]
    with connection.cursor() as cursor:
        # One JSON document instead of per-column arrays: orjson and PostgreSQL parse it far faster than
        # psycopg adapts Python lists, and Django's bulk_update (a CASE per column) is quadratic.
        cursor.execute(
            "UPDATE profiles_profile p SET traits = coalesce(v.traits, p.traits), "
            "trait_times = coalesce(v.trait_times, p.trait_times), event_count = v.event_count, "
            "event_counts = v.event_counts, first_seen = v.first_seen, last_seen = v.last_seen, "
            "regime = coalesce(v.regime, p.regime), updated_at = %s "
            "FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, traits jsonb, trait_times jsonb, event_count int, "
            "event_counts jsonb, first_seen timestamptz, last_seen timestamptz, regime text) WHERE p.id = v.id",
            [now, _json(rows)],
        )


_SQL_TYPES = {"type": "text", "value": "text", "profile_id": "bigint", "source_event_id": "bigint",
              "first_seen": "timestamptz", "key": "text", "old_value": "jsonb", "new_value": "jsonb",
              "changed_at": "timestamptz", "event_id": "bigint"}


def _insert_rows(model, columns: list[str], rows: list[tuple]) -> None:
    """Inserts rows in one statement, skipping any that would break a unique constraint."""
    if not rows:
        return
    names = ", ".join(columns)
    spec = ", ".join(f"{c} {_SQL_TYPES[c]}" for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {model._meta.db_table} ({names}) SELECT {names} FROM jsonb_to_recordset(%s::jsonb) "
            f"AS r({spec}) ON CONFLICT DO NOTHING",
            [_json([dict(zip(columns, row)) for row in rows])],
        )


def _int_array(values) -> str:
    """An array literal of integers: psycopg's list adapter checks every element in Python."""
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def _json(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


_EVENT_COLUMNS = "id, source_id, message_id, type, event, user_id, anonymous_id, timestamp, received_at, payload"


def _move_processed(rows: list[tuple[int, int | None]], now: datetime, error: str = "") -> None:
    """Moves events out of the queue into the events table, each on its profile, in one statement.

    The payload never travels back to Python: PostgreSQL moves the row itself.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH v AS (SELECT * FROM jsonb_to_recordset(%s::jsonb) AS v(i bigint, p bigint)), "
            "gone AS (DELETE FROM profiles_pendingevent q USING v WHERE q.id = v.i "
            f"RETURNING q.*, v.p) INSERT INTO profiles_event ({_EVENT_COLUMNS}, profile_id, processed_at, error) "
            f"SELECT {_EVENT_COLUMNS}, p, %s, %s FROM gone",
            [_json([{"i": i, "p": p} for i, p in rows]), now, error],
        )
