"""A privacy request's receipt in plain words, for the request page and the downloadable copies. Pure functions.

A receipt (PrivacyRequest.receipt) counts what was done per kind of data, under the keys the erasure handlers
return; the subject and the privacy officer read "12 queued events erased", never a table's name.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

# key: (one, many), the words after the count.
ERASED = {
    "events": ("event erased", "events erased"),
    "queued_events": ("queued event erased", "queued events erased"),
    "set_aside_events": ("event set aside by the pipeline erased", "events set aside by the pipeline erased"),
    "trait_changes": ("trait change erased", "trait changes erased"),
    "identifiers": ("identifier erased", "identifiers erased"),
    "merge_records": ("merge record erased", "merge records erased"),
    "profiles": ("profile erased", "profiles erased"),
    "consent_entries_anonymised": ("consent choice kept as proof, without personal data",
                                   "consent choices kept as proof, without personal data"),
    "consent_states": ("current consent state erased", "current consent states erased"),
    "export_files": ("earlier export file deleted", "earlier export files deleted"),
    "other_requests_reduced": ("other request of the subject cleared of personal data",
                               "other requests of the subject cleared of personal data"),
}
EXPORTED = {
    "profiles": ("profile", "profiles"),
    "identifiers": ("identifier", "identifiers"),
    "trait_history": ("trait change", "trait changes"),
    "events": ("event", "events"),
    "consent_history": ("consent choice", "consent choices"),
}
TIMES = (("received_at", "Received"), ("started_at", "Started"), ("completed_at", "Completed"),
         ("expires_at", "Export available until"))


@dataclass(frozen=True)
class Line:
    count: int
    words: str

    def __str__(self) -> str:
        return f"{self.count} {self.words}"


def _words(key: str, count: int, known: dict[str, tuple[str, str]], suffix: str) -> str:
    one, many = known.get(key, (f"{key.replace('_', ' ')}{suffix}", f"{key.replace('_', ' ')}{suffix}"))
    return one if count == 1 else many


def receipt_lines(receipt: dict | None) -> list[Line]:
    """What the request did, one line per kind of data, in plain words."""
    if not receipt:
        return []
    lines: list[Line] = []
    erased = receipt.get("erased")
    if isinstance(erased, dict):
        lines += [Line(n, _words(key, n, ERASED, " erased")) for key, n in erased.items() if isinstance(n, int)]
        if isinstance(receipt.get("suppressed_identifiers"), int):
            n = receipt["suppressed_identifiers"]
            lines.append(Line(n, "identifier suppressed (later events carrying it are dropped)" if n == 1 else
                              "identifiers suppressed (later events carrying them are dropped)"))
        return lines
    counts = receipt.get("counts")
    if isinstance(counts, dict):  # an access or portability export
        lines += [Line(n, _words(key, n, EXPORTED, "") + " exported") for key, n in counts.items()
                  if isinstance(n, int)]
        if isinstance(receipt.get("bytes"), int):
            lines.append(Line(receipt["bytes"], "bytes in the export file"))
        return lines
    if isinstance(receipt.get("profiles"), int):
        n = receipt["profiles"]
        kind = receipt.get("kind")
        done = {"opt_out_sale": "opted out of sale and sharing", "restriction": "restricted (every purpose denied)",
                "rectification": "rectified"}.get(kind, "handled")
        lines.append(Line(n, f"profile {done}" if n == 1 else f"profiles {done}"))
    if isinstance(receipt.get("traits"), list):
        n = len(receipt["traits"])
        lines.append(Line(n, ("trait corrected: " if n == 1 else "traits corrected: ")
                          + ", ".join(map(str, receipt["traits"]))))
    return lines


def receipt_times(receipt: dict | None) -> list[tuple[str, datetime]]:
    """The receipt's times as aware datetimes, with their labels (the screen shows them in the viewer's zone)."""
    out = []
    for key, label in TIMES:
        value = (receipt or {}).get(key)
        if isinstance(value, str):
            try:
                out.append((label, datetime.fromisoformat(value)))
            except ValueError:
                continue
    return out


def progress_lines(progress: dict | None) -> list[Line]:
    """A running erasure's counts so far, in the same words."""
    counts = (progress or {}).get("counts")
    if not isinstance(counts, dict):
        return []
    return [Line(n, _words(key, n, ERASED, " erased")) for key, n in counts.items() if isinstance(n, int)]


def receipt_document(request) -> dict:
    """The receipt to download as JSON: the request's dates and status, the receipt as stored, and its summary."""
    return {"request": request.pk, "kind": request.kind, "regime": request.regime, "status": request.status,
            "received_at": request.received_at.isoformat(), "due_on": request.due_on.isoformat(),
            "completed_at": request.completed_at.isoformat() if request.completed_at else None,
            "summary": [str(line) for line in receipt_lines(request.receipt)], "receipt": request.receipt}


def receipt_text(request, *, zone: tzinfo) -> str:
    """The receipt for a person to read: what was done in plain words, times in `zone`, no personal data."""
    def when(moment: datetime) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")

    lines = [f"Receipt for privacy request #{request.pk}", "",
             f"Request: {request.get_kind_display()} ({request.get_regime_display()})",
             f"Status: {request.get_status_display()}",
             f"Received: {when(request.received_at)}", f"Due: {request.due_on.isoformat()}"]
    lines += [f"{label}: {when(moment)}" for label, moment in receipt_times(request.receipt) if label != "Received"]
    if request.rejected_reason:
        lines.append(f"Rejected: {request.rejected_reason}")
    lines += ["", "What was done:"] + [f"- {line}" for line in receipt_lines(request.receipt)]
    if (request.receipt or {}).get("recreation_allowed"):
        lines.append("- Later events may create a new profile (the request allowed it).")
    if not request.receipt:
        lines.append("- Nothing: the request was closed without being carried out.")
    lines += ["", f"Times are in {getattr(zone, 'key', zone)}."]
    return "\n".join(lines) + "\n"
