"""Writes the privacy regime stored on profiles. Which regime a profile's traits name is consent's to decide."""
from __future__ import annotations

import orjson
from django.db import connection


def profiles_set_regime(*, regimes: dict[int, str]) -> int:
    """Stores each profile's regime ("" for none) in one statement; returns how many profiles changed.

    A profile that already holds its regime is not rewritten, so calling it again changes nothing. The caller
    holds the profiles' locks when it derived the regimes from traits it read under them.
    """
    if not regimes:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE profiles_profile p SET regime = v.regime FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, "
            "regime text) WHERE p.id = v.id AND p.regime IS DISTINCT FROM v.regime",
            [orjson.dumps([{"id": pid, "regime": regime} for pid, regime in regimes.items()]).decode()])
        return cursor.rowcount
