"""The erasure and export registry: every app that stores personal data registers a handler in its
AppConfig.ready(). A test walks all models and fails when one that holds a profile reference or personal data
is covered by no handler, so a new table cannot be forgotten."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Model


@dataclass(frozen=True)
class Handler:
    name: str
    # The models whose personal data this handler erases and exports.
    models: tuple[type[Model], ...]
    # erase(profile_ids, limit): removes at most `limit` rows per table for these profiles (merged ones
    # included); returns rows erased per table. Called until it erases nothing, so it must be idempotent.
    erase: Callable[[list[int], int], dict[str, int]]
    # export(profile_ids): the subject's data as JSON-ready values, one key per kind of data.
    export: Callable[[list[int]], dict]
    # Erased after every other handler (the profiles themselves go last).
    last: bool = False
    # finish(profile_ids): runs once at the very end, under the profiles' locks, after every handler has run
    # again without a limit; the profiles handler deletes the profiles here.
    finish: Callable[[list[int]], dict[str, int]] | None = None


_handlers: dict[str, Handler] = {}


def register(handler: Handler) -> None:
    _handlers[handler.name] = handler


def handlers() -> list[Handler]:
    """Every registered handler, the ones marked `last` at the end."""
    return sorted(_handlers.values(), key=lambda h: (h.last, h.name))
