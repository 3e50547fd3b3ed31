"""Creating, changing and deleting segments: a definition is checked whole (language, references, purposes,
cycles) before anything is saved, and a change queues a recompute."""
from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from consent.selectors import purpose_choices
from profiles.common.queueing import enqueue_after_commit
from profiles.selectors import identifier_normalise
from segments import rules
from segments.models import Destination, Segment, StaticMember


@dataclass(frozen=True)
class CheckedDefinition:
    node: object
    references: list[str]


def _path_of(node, wanted) -> str:
    """The JSON path of the first leaf for which `wanted(leaf)` holds."""
    for path, leaf in rules.leaves(node):
        if wanted(leaf):
            return path
    return "definition"


def definition_check(*, definition: object, key: str | None = None) -> CheckedDefinition:
    """Parses a definition and checks what the language alone cannot: that the segments it names exist and do
    not lead back to `key` (a cycle), and that the consent purposes it names exist.

    Raises rules.DefinitionError with the JSON path of the first bad place.
    """
    node = rules.parse(definition)
    referenced = rules.references(node)
    if referenced:
        known = dict(Segment.objects.filter(key__in=referenced | ({key} if key else set()))
                     .values_list("key", "references"))
        for name in sorted(referenced):
            if name == key:
                raise rules.DefinitionError(f'a segment cannot contain itself ("{name}")',
                                            _path_of(node, lambda leaf: getattr(leaf, "key", None) == name))
            if name not in known:
                raise rules.DefinitionError(f'no segment has the key "{name}"',
                                            _path_of(node, lambda leaf: getattr(leaf, "key", None) == name))
        if key:
            cycle = _cycle_through(key, referenced)
            if cycle:
                first = cycle[1]
                raise rules.DefinitionError("segments would contain each other: " + " -> ".join(cycle),
                                            _path_of(node, lambda leaf: getattr(leaf, "key", None) == first))
    purposes = rules.purposes(node)
    if purposes:
        existing = {k for k, _ in purpose_choices()}
        for purpose in sorted(purposes - existing):
            raise rules.DefinitionError(f'no consent purpose has the key "{purpose}"',
                                        _path_of(node, lambda leaf: getattr(leaf, "purpose", None) == purpose))
    return CheckedDefinition(node, sorted(referenced))


def _cycle_through(key: str, referenced: set[str]) -> list[str] | None:
    """The path key -> ... -> key through stored references, if one exists (one query per level of depth)."""
    parents: dict[str, str] = {name: key for name in referenced}
    frontier = set(referenced)
    seen = set(frontier)
    while frontier:
        rows = Segment.objects.filter(key__in=frontier).values_list("key", "references")
        frontier = set()
        for name, refs in rows:
            for ref in refs:
                if ref == key:
                    path, at = [key], name
                    while at != key:
                        path.insert(1, at)
                        at = parents[at]
                    return path + [key]
                if ref not in seen:
                    seen.add(ref)
                    parents[ref] = name
                    frontier.add(ref)
    return None


@transaction.atomic
def segment_create(*, key: str, name: str, mode: str, definition: object = None, description: str = "",
                   destinations: list[Destination] | None = None) -> Segment:
    """Creates a segment and queues its first computation. Raises rules.DefinitionError for a bad definition
    (a static segment has none)."""
    references: list[str] = []
    if mode != Segment.Mode.STATIC:
        references = definition_check(definition=definition, key=key).references
    segment = Segment.objects.create(key=key, name=name, mode=mode, description=description,
                                     definition=definition if mode != Segment.Mode.STATIC else {},
                                     references=references)
    if destinations:
        segment.destinations.set(destinations)
    enqueue_after_commit("segments.recompute", segment.pk)
    return segment


@transaction.atomic
def segment_update(*, segment: Segment, name: str | None = None, description: str | None = None,
                   mode: str | None = None, definition: object = None,
                   destinations: list[Destination] | None = None) -> Segment:
    """Changes a segment; a new definition or mode is checked whole and queues a recompute."""
    segment = Segment.objects.select_for_update().get(pk=segment.pk)
    recompute = False
    if mode is not None and mode != segment.mode:
        segment.mode, recompute = mode, True
    if definition is not None and definition != segment.definition:
        segment.definition, recompute = definition, True
    if segment.mode == Segment.Mode.STATIC:
        segment.definition, segment.references = {}, []
    elif recompute:
        segment.references = definition_check(definition=segment.definition, key=segment.key).references
    if name is not None:
        segment.name = name
    if description is not None:
        segment.description = description
    if recompute and segment.status == Segment.Status.READY:
        # Its memberships answer the old definition until the recompute (which makes it ready again).
        segment.status = Segment.Status.COMPUTING
    segment.save()
    if destinations is not None:
        segment.destinations.set(destinations)
    if recompute:
        enqueue_after_commit("segments.recompute", segment.pk)
    return segment


class SegmentInUse(Exception):
    def __init__(self, dependants: list[str]):
        self.dependants = dependants
        super().__init__("other segments use this one: " + ", ".join(dependants))


@transaction.atomic
def segment_delete(*, segment: Segment) -> None:
    """Deletes a segment with its memberships and history. Raises SegmentInUse while another segment's
    definition names it."""
    dependants = sorted(Segment.objects.filter(references__contains=[segment.key]).values_list("key", flat=True))
    if dependants:
        raise SegmentInUse(dependants)
    segment.delete()


@transaction.atomic
def static_members_add(*, segment: Segment, identifiers: list[tuple[str, str]]) -> int:
    """Adds identifiers (type, value) to a static segment, normalised as identity resolution stores them (an
    email in any case, a phone in any format); returns how many were new. Queues a recompute."""
    rows = {(kind, identifier_normalise(kind, value)) for kind, value in identifiers}
    rows = {(kind, value) for kind, value in rows if value}
    before = StaticMember.objects.filter(segment=segment).count()
    StaticMember.objects.bulk_create(
        [StaticMember(segment=segment, identifier_type=kind, value=value[:512]) for kind, value in sorted(rows)],
        ignore_conflicts=True, batch_size=5000)
    added = StaticMember.objects.filter(segment=segment).count() - before
    enqueue_after_commit("segments.recompute", segment.pk)
    return added


@transaction.atomic
def static_members_remove(*, segment: Segment, identifiers: list[tuple[str, str]]) -> int:
    """Removes identifiers from a static segment; returns how many were listed. Queues a recompute."""
    removed = 0
    for kind in {kind for kind, _ in identifiers}:
        values = [identifier_normalise(kind, v) for k, v in identifiers if k == kind]
        removed += StaticMember.objects.filter(segment=segment, identifier_type=kind, value__in=values).delete()[0]
    enqueue_after_commit("segments.recompute", segment.pk)
    return removed
