"""Validation and normalisation of Segment Spec messages, and the identifiers each one carries.

Pure functions, no database: the collection API, the importer and the demo generator share them.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
import phonenumbers

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
# PostgreSQL stores years 1 to 294276, Python 1 to 9999; anything outside this window is a client bug.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)
# A NUL character as JSON writes it (PostgreSQL's jsonb cannot hold one): \u0000 after an even number of
# backslashes. After an odd number it is the six characters "\u0000" in the text, which are kept.
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# The deepest nesting orjson (and so the event store) takes in one message.
MAX_DEPTH = 254
INT64 = (-(2**63), 2**64 - 1)


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    code: str
    message: str
    field: str | None = None

    def as_dict(self) -> dict:
        out = {"index": self.index, "code": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


@dataclass(slots=True)
class AcceptedMessage:
    message_id: str
    type: str
    event: str
    user_id: str
    anonymous_id: str
    timestamp: datetime
    payload: dict


def _as_id(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return ""


def parse_time(value) -> datetime | None:
    """An ISO 8601 timestamp as sent by the clients ("Z" or an offset); naive times are taken as UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def validate_message(message, *, index: int, received_at: datetime, default_type: str | None,
                     max_bytes: int) -> AcceptedMessage | Rejection:
    """Checks one message against the Segment Spec and returns it normalised, or why it was refused."""
    if not isinstance(message, dict):
        return Rejection(index, "invalid_message", "A message must be a JSON object.")
    msg_type = message.get("type") or default_type
    if default_type and message.get("type") and message.get("type") != default_type:
        msg_type = default_type
    if msg_type not in MESSAGE_TYPES:
        return Rejection(index, "unknown_type", f"Unknown message type {message.get('type')!r}; expected one of "
                         + ", ".join(MESSAGE_TYPES) + ".", "type")
    try:
        raw = orjson.dumps(message)
    except orjson.JSONEncodeError:
        return _unstorable(message, index)
    if len(raw) > max_bytes:
        return Rejection(index, "message_too_large", f"The message is {len(raw)} bytes; the limit is {max_bytes}.")
    if b"\\u0000" in raw and _NUL.search(raw):
        return Rejection(index, "invalid_character", "The message contains a NUL character (\\u0000).")
    user_id = _as_id(message.get("userId"))
    anonymous_id = _as_id(message.get("anonymousId"))
    if not user_id and not anonymous_id:
        return Rejection(index, "missing_identity", "Either userId or anonymousId is required.", "userId")
    event = ""
    if msg_type == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event.strip():
            return Rejection(index, "missing_field", "A track message needs an event name.", "event")
        event = event.strip()[:200]
    elif msg_type in ("page", "screen"):
        name = message.get("name")
        event = name.strip()[:200] if isinstance(name, str) else ""
    elif msg_type == "alias":
        if not _as_id(message.get("previousId")) or not user_id:
            return Rejection(index, "missing_field", "An alias message needs previousId and userId.", "previousId")
    elif msg_type == "group":
        if not _as_id(message.get("groupId")):
            return Rejection(index, "missing_field", "A group message needs a groupId.", "groupId")
    for name in ("traits", "properties", "context"):
        if name in message and message[name] is not None and not isinstance(message[name], dict):
            return Rejection(index, "invalid_field", f"{name} must be a JSON object.", name)

    timestamp = received_at
    if "timestamp" in message and message["timestamp"] is not None:
        sent_time = parse_time(message["timestamp"])
        if sent_time is None:
            return Rejection(index, "invalid_timestamp", "timestamp is not an ISO 8601 date-time.", "timestamp")
        timestamp = sent_time
        # Segment's clock-skew correction: the client's clock is trusted for intervals, not for the epoch.
        sent_at = parse_time(message.get("sentAt"))
        if sent_at is not None:
            try:
                timestamp = received_at - (sent_at - sent_time)
            except OverflowError:
                timestamp = LATEST  # refused just below
        if not EARLIEST <= timestamp < LATEST:
            return Rejection(index, "invalid_timestamp", "timestamp (after clock-skew correction with sentAt) is "
                             "outside 1970-2199.", "timestamp")
    message_id = _as_id(message.get("messageId"))[:200]
    if not message_id:
        # As Segment does: a message without an id gets a new one, so two identical clicks stay two events.
        message_id = f"generated-{uuid.uuid4()}"
    payload = dict(message)
    payload["type"] = msg_type
    payload.pop("writeKey", None)
    return AcceptedMessage(
        message_id=message_id,
        type=msg_type,
        event=event,
        user_id=user_id[:512],
        anonymous_id=anonymous_id[:512],
        # As its UTC instant: PostgreSQL refuses offsets past 15:59, which Python's ISO parser accepts.
        timestamp=timestamp.astimezone(timezone.utc),
        payload=payload,
    )


def _unstorable(message: dict, index: int) -> Rejection:
    """Why a parsed message cannot be stored: an integer beyond 64 bits, or nesting deeper than MAX_DEPTH. Walked
    without recursion: the message may nest a thousand levels deep."""
    stack: list[tuple[object, str, int]] = [(message, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            return Rejection(index, "too_deep", f"The message nests objects and lists more than {MAX_DEPTH} levels "
                             "deep.", path or None)
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
            return Rejection(index, "number_out_of_range", f"{path} is an integer beyond 64 bits; send it as a "
                             "string.", path)
    return Rejection(index, "invalid_field", "The message holds a value that cannot be stored.")


def normalise_email(value) -> str:
    if not isinstance(value, str):
        return ""
    value = value.strip().lower()
    return value if "@" in value and len(value) <= 320 else ""


def normalise_phone(value, default_region: str) -> str:
    """E.164 form, or "" when the number cannot be a real one."""
    if not isinstance(value, (str, int)):
        return ""
    try:
        number = phonenumbers.parse(str(value), default_region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def message_traits(payload: dict) -> dict:
    """Traits a message sets: identify's traits, and context.traits that clients attach to every call."""
    traits = {}
    context = payload.get("context")
    if isinstance(context, dict) and isinstance(context.get("traits"), dict):
        traits.update(context["traits"])
    if payload.get("type") == "identify" and isinstance(payload.get("traits"), dict):
        traits.update(payload["traits"])
    return traits


def same_trait_value(a, b) -> bool:
    """Whether two trait values are the same JSON: Python's == holds 1 equal to true and [0] to [false], which
    the segments' conditions (jsonb) tell apart."""
    return a == b and orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def message_identifiers(payload: dict, *, default_region: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The identifiers a message carries, and those it only links if they already exist (alias's previousId).

    Returns (identifiers, link_only), each a list of (type, value) without duplicates, in priority-free order.
    """
    found: dict[tuple[str, str], None] = {}
    user_id = _as_id(payload.get("userId"))
    anonymous_id = _as_id(payload.get("anonymousId"))
    if user_id:
        found[("user_id", user_id[:512])] = None
    if anonymous_id:
        found[("anonymous_id", anonymous_id[:512])] = None
    traits = message_traits(payload)
    email = normalise_email(traits.get("email"))
    if email:
        found[("email", email)] = None
    phone = normalise_phone(traits.get("phone"), default_region) if traits.get("phone") else ""
    if phone:
        found[("phone", phone)] = None
    context = payload.get("context")
    external = context.get("externalIds") if isinstance(context, dict) else None
    if isinstance(external, list):
        for item in external:
            if not isinstance(item, dict):
                continue
            ext_type = item.get("type")
            ext_id = _as_id(item.get("id"))
            if not isinstance(ext_type, str) or not ext_type.strip() or not ext_id:
                continue
            ext_type = ext_type.strip().lower()[:64]
            if ext_type == "email":
                ext_id = normalise_email(ext_id)
            elif ext_type == "phone":
                ext_id = normalise_phone(ext_id, default_region)
            elif ext_type in ("userid", "user_id"):
                ext_type = "user_id"
            if ext_id:
                found[(ext_type, ext_id[:512])] = None
    link_only: list[tuple[str, str]] = []
    if payload.get("type") == "alias":
        previous = _as_id(payload.get("previousId"))[:512]
        if previous:
            link_only = [("user_id", previous), ("anonymous_id", previous)]
    return list(found), link_only
