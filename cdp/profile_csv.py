"""The profile list's CSV export: one line per profile, personal data masked for readers who may not see it, and
no cell a spreadsheet would run as a formula."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from profiles.masking import known_values, mask_identifier, mask_traits

COLUMNS = ["profile_id", "user_id", "email", "phone", "name", "first_seen", "last_seen", "created_at", "events",
           "orders", "lifetime_value", "traits"]
# A cell a spreadsheet would run as a formula (CWE-1236); a phone number such as +14155550100 is kept as it is.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    if isinstance(value, (int, float)):
        return str(value)
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not text.replace("+", "", 1).replace("•", "").isdigit():
        return "'" + text
    return text


def csv_lines(rows, *, masks: bool) -> Iterator[str]:
    """The CSV text, a line at a time, of (profile, identifiers by type) rows; masked when `masks`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_cell(v) for v in values])
        return buffer.getvalue()

    yield line(COLUMNS)
    for profile, identifiers in rows:
        traits = profile.traits
        if masks:
            known = known_values((kind, v) for kind, values in identifiers.items() for v in values)
            traits = mask_traits(traits, known)
            identifiers = {kind: [mask_identifier(kind, v, known) for v in values]
                           for kind, values in identifiers.items()}
        yield line([profile.pk, " ".join(identifiers.get("user_id", [])), " ".join(identifiers.get("email", [])),
                    " ".join(identifiers.get("phone", [])), traits.get("name", ""),
                    profile.first_seen.isoformat() if profile.first_seen else "",
                    profile.last_seen.isoformat() if profile.last_seen else "", profile.created_at.isoformat(),
                    profile.event_count, profile.computed.get("frequency_orders", 0),
                    profile.computed.get("monetary_value", ""),
                    json.dumps(traits, ensure_ascii=False, sort_keys=True, default=str)])
