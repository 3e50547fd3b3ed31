"""What makes a campaign's definition valid, and the pure arithmetic of deciding: caps, windows, the stable hash
that allocates people. No database access.

Every error names the JSON path of the first bad place (`variants[1].weight`), as the segments rule language does.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from segments import rules as segment_rules
from segments.recommender import LIST_MAX
from segments.rules import DefinitionError

CAP_PERIODS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1), "lifetime": None}
CHANNEL_PURPOSES = {"web": "personalization", "push": "personalization", "email": "marketing_email",
                    "sms": "marketing_sms"}
VARIANT_KEY_MAX = 50
# Names a variant cannot take: they are what a decision reports for people who got no variant.
HOLDOUT = "holdout"
RESERVED_VARIANTS = {"control", HOLDOUT}


@dataclass(frozen=True)
class Cap:
    count: int
    per: str

    @property
    def window(self) -> timedelta | None:
        return CAP_PERIODS[self.per]


@dataclass(frozen=True)
class Variant:
    key: str
    weight: float
    content: dict


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_caps(value: object, *, path: str = "caps") -> tuple[Cap, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DefinitionError("caps are a list of {\"count\", \"per\"}", path)
    caps = []
    for i, cap in enumerate(value):
        here = f"{path}[{i}]"
        if not isinstance(cap, dict):
            raise DefinitionError("a cap is an object {\"count\": 3, \"per\": \"day\"}", here)
        unknown = set(cap) - {"count", "per"}
        if unknown:
            raise DefinitionError(f"unknown field \"{sorted(unknown)[0]}\" in a cap", f"{here}.{sorted(unknown)[0]}")
        count = cap.get("count")
        if not _is_int(count) or count < 1:
            raise DefinitionError("count is a whole number of at least 1", f"{here}.count")
        if cap.get("per") not in CAP_PERIODS:
            raise DefinitionError(f"per is one of {', '.join(CAP_PERIODS)}", f"{here}.per")
        caps.append(Cap(count, cap["per"]))
    return tuple(caps)


def parse_channel_caps(value: object, *, path: str = "channel_caps") -> dict[str, tuple[Cap, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DefinitionError("channel caps are an object of channel: cap", path)
    caps = {}
    for channel, cap in value.items():
        if channel not in CHANNEL_PURPOSES:
            raise DefinitionError(f"unknown channel \"{channel}\"", f"{path}.{channel}")
        caps[channel] = parse_caps([cap] if isinstance(cap, dict) else cap, path=f"{path}.{channel}")
    return caps


def parse_variants(value: object, *, path: str = "variants") -> tuple[Variant, ...]:
    if not isinstance(value, list) or not value:
        raise DefinitionError("a campaign has at least one variant: [{\"key\", \"weight\", \"content\"}]", path)
    variants, keys = [], set()
    for i, variant in enumerate(value):
        here = f"{path}[{i}]"
        if not isinstance(variant, dict):
            raise DefinitionError("a variant is an object {\"key\", \"weight\", \"content\"}", here)
        unknown = set(variant) - {"key", "weight", "content"}
        if unknown:
            raise DefinitionError(f"unknown field \"{sorted(unknown)[0]}\" in a variant",
                                  f"{here}.{sorted(unknown)[0]}")
        key = variant.get("key")
        if not isinstance(key, str) or not key.strip() or len(key) > VARIANT_KEY_MAX:
            raise DefinitionError(f"a variant's key is a non-empty name of at most {VARIANT_KEY_MAX} characters",
                                  f"{here}.key")
        if key.lower() in RESERVED_VARIANTS:
            raise DefinitionError(f"\"{key}\" is what people without a variant are called; choose another key",
                                  f"{here}.key")
        if key in keys:
            raise DefinitionError(f"two variants have the key \"{key}\"", f"{here}.key")
        keys.add(key)
        weight = variant.get("weight")
        if not _is_number(weight) or weight < 0:
            raise DefinitionError("a variant's weight is a number from 0 to 100", f"{here}.weight")
        content = variant.get("content", {})
        if not isinstance(content, dict):
            raise DefinitionError("a variant's content is a JSON object", f"{here}.content")
        check_recommendations(content, f"{here}.content")
        variants.append(Variant(key, float(weight), content))
    total = sum(v.weight for v in variants)
    if abs(total - 100) > 1e-9:
        raise DefinitionError(f"the variants' weights add up to {total:g}, not 100", f"{path}[0].weight")
    return tuple(variants)


def parse_share(value: object, *, path: str) -> float:
    if not _is_number(value) or not 0 <= value <= 1:
        raise DefinitionError("a share is a number from 0 (nobody) to 1 (everyone)", path)
    return float(value)


def parse_targeting(value: object, *, path: str = "targeting"):
    """The targeting node (the segments rule language, with context conditions), or None for everyone."""
    if value is None:
        return None
    return segment_rules.parse(value, path=path, context_allowed=True)


def parse_goal(value: object, *, path: str = "goal") -> segment_rules.Event | None:
    """A goal is an event condition with an optional `where` and `within` (the attribution window)."""
    if value is None:
        return None
    if not isinstance(value, dict) or "event" not in value:
        raise DefinitionError("a goal is {\"event\": ..., \"where\": [...], \"within\": \"7d\"}", path)
    unknown = set(value) - {"event", "where", "within"}
    if unknown:
        raise DefinitionError(f"unknown field \"{sorted(unknown)[0]}\" in a goal", f"{path}.{sorted(unknown)[0]}")
    node = segment_rules.parse(value, path=path)
    if not isinstance(node, segment_rules.Event) or node.within is None:
        raise DefinitionError("a goal needs \"within\": how long after an exposure a conversion counts",
                              f"{path}.within")
    return node


def bucket(salt: str, subject: str) -> float:
    """A stable number in [0, 1) for (salt, subject): the same person lands in the same place for as long as the
    salt is the same, and different salts (campaigns) place people independently."""
    digest = hashlib.blake2b(f"{salt}\x00{subject}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64


def held_out(*, share: float, unit: str, earlier: bool | None) -> bool:
    """Whether the person is in the global holdout: by the stable hash of their unit, unless they were held out
    (or shown a campaign) before, which sticks while there is a holdout at all."""
    if not share:
        return False
    if earlier is not None:
        return earlier
    return bucket(HOLDOUT, unit) < share


def allocation_unit(*, user_id: str | None, anonymous_id: str | None = None, profile_id: int | None = None) -> str:
    """What the global holdout and every allocation hash, the same for a decision and a triggered send: the
    person's user id when one is known (sent, or held by their profile), else the anonymous id, else the profile.
    A person whose unit changes (an anonymous visitor who logs in) keeps what they got first: stickiness comes
    from their exposures, which follow them into their profile."""
    if user_id:
        return f"user_id:{user_id}"
    if anonymous_id:
        return f"anonymous_id:{anonymous_id}"
    return f"profile:{profile_id}"


def allocate(*, salt: str, subject: str, control_share: float, variants: tuple[Variant, ...]) -> str:
    """"control" for the first `control_share` of the unit interval, else a variant in proportion to the weights
    over the rest."""
    point = bucket(salt, subject)
    if point < control_share or control_share >= 1:
        return "control"
    position = (point - control_share) / (1 - control_share) * 100
    running = 0.0
    for variant in variants:
        running += variant.weight
        if position < running:
            return variant.key
    return next(v.key for v in reversed(variants) if v.weight > 0)


def thompson_pick(variants: tuple[Variant, ...], stats: dict[str, tuple[int, int]], rng) -> str:
    """The variant whose draw from Beta(1 + conversions, 1 + exposed - conversions) is highest: mostly the best
    so far, the others in proportion to the chance that they are in fact better. Variants of weight 0 are off."""
    best, best_draw = None, -1.0
    for variant in variants:
        if variant.weight <= 0:
            continue
        exposed, converted = stats.get(variant.key, (0, 0))
        draw = rng.betavariate(1 + converted, 1 + max(0, exposed - converted))
        if draw > best_draw:
            best, best_draw = variant.key, draw
    return best


# --- triggered actions ----------------------------------------------------------------------------------------

# A placeholder in a payload: {{ profile.traits.first_name }}. A string that is nothing but one placeholder takes
# the value as it is (a number, an object); inside longer text the value is written as text.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
# What a payload can name: the person (id, user_id, email, phone, traits), the campaign (id, key), the variant's
# key and content, the segment entered (id, key), when (entered_at), and the send's id.
PAYLOAD_ROOTS = ("profile", "campaign", "variant", "content", "segment", "entered_at", "send_id")
CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
TRIGGER_FIELDS = {"segment", "placement", "destination", "payload", "delay", "quiet_hours"}
MAX_DELAY = timedelta(days=30)


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def holds(self, local: datetime) -> bool:
        """Whether a local time falls in the quiet hours (which may run across midnight: 21:00 to 08:00)."""
        now = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def next_end(self, local: datetime) -> datetime:
        """The first moment after `local` at which the quiet hours are over."""
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        return end if end > local else end + timedelta(days=1)


@dataclass(frozen=True)
class Trigger:
    segment: str
    placement: str
    destination: int
    payload: object | None
    delay: timedelta
    quiet_hours: QuietHours | None


def _clock(value: object, path: str) -> time:
    if not isinstance(value, str) or not (match := CLOCK.fullmatch(value.strip())):
        raise DefinitionError("a time of day, HH:MM on a 24-hour clock (\"21:00\")", path)
    return time(int(match.group(1)), int(match.group(2)))


def _placeholders(value: object, path: str) -> None:
    if isinstance(value, str):
        for match in PLACEHOLDER.finditer(value):
            root = match.group(1).split(".")[0]
            if root not in PAYLOAD_ROOTS:
                raise DefinitionError(f"unknown placeholder \"{match.group(1)}\"; a payload can name "
                                      f"{', '.join(PAYLOAD_ROOTS)}", path)
        if "{{" in PLACEHOLDER.sub("", value):
            raise DefinitionError("an unclosed or malformed placeholder: {{ name.path }}", path)
    elif isinstance(value, dict):
        for key, item in value.items():
            _placeholders(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _placeholders(item, f"{path}[{i}]")


def parse_trigger(value: object, *, path: str = "trigger") -> Trigger | None:
    """A trigger, or None for a campaign that only answers decisions. Which segment, placement and destination
    it names are checked against the database by the service that saves it."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DefinitionError("a trigger is {\"segment\", \"placement\", \"destination\", \"payload\", \"delay\", "
                              "\"quiet_hours\"}", path)
    unknown = set(value) - TRIGGER_FIELDS
    if unknown:
        raise DefinitionError(f"unknown field \"{sorted(unknown)[0]}\" in a trigger", f"{path}.{sorted(unknown)[0]}")
    for name in ("segment", "placement"):
        if not isinstance(value.get(name), str) or not value[name].strip():
            raise DefinitionError(f"a trigger names its {name} by key", f"{path}.{name}")
    destination = value.get("destination")
    if not _is_int(destination) or destination < 1:
        raise DefinitionError("a trigger names its destination (a webhook) by id", f"{path}.destination")
    payload = value.get("payload")
    if payload is not None:
        if not isinstance(payload, dict):
            raise DefinitionError("a payload is a JSON object, with {{ placeholders }} in its strings",
                                  f"{path}.payload")
        _placeholders(payload, f"{path}.payload")
    delay = timedelta(0)
    if value.get("delay") is not None:
        delay = segment_rules.parse_duration(value["delay"], path=f"{path}.delay")
        if delay > MAX_DELAY:
            raise DefinitionError("a delay is at most 30 days", f"{path}.delay")
    quiet = None
    if value.get("quiet_hours") is not None:
        hours = value["quiet_hours"]
        if not isinstance(hours, dict) or set(hours) != {"start", "end"}:
            raise DefinitionError("quiet hours are {\"start\": \"21:00\", \"end\": \"08:00\"} in the person's "
                                  "time zone", f"{path}.quiet_hours")
        quiet = QuietHours(_clock(hours["start"], f"{path}.quiet_hours.start"),
                           _clock(hours["end"], f"{path}.quiet_hours.end"))
        if quiet.start == quiet.end:
            raise DefinitionError("quiet hours that start when they end are no quiet hours", f"{path}.quiet_hours.end")
    return Trigger(value["segment"].strip(), value["placement"].strip(), destination, payload, delay, quiet)


def _lookup(values: dict, dotted: str):
    found: object = values
    for part in dotted.split("."):
        if not isinstance(found, dict) or part not in found:
            return None
        found = found[part]
    return found


def render_payload(template: object, values: dict) -> object:
    """The payload with its placeholders filled from `values`; a name with no value gives null (alone) or
    nothing (inside text)."""
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template.strip())
        if whole:
            return _lookup(values, whole.group(1))

        def text(match: re.Match) -> str:
            found = _lookup(values, match.group(1))
            return "" if found is None else str(found)
        return PLACEHOLDER.sub(text, template)
    if isinstance(template, dict):
        return {key: render_payload(item, values) for key, item in template.items()}
    if isinstance(template, list):
        return [render_payload(item, values) for item in template]
    return template


# Content {"recommendations": {"k": 4}} is filled at decision time with the person's top k items.
RECOMMENDATIONS_KEY = "recommendations"
RECOMMENDATIONS_MAX = LIST_MAX


def check_recommendations(content: dict, here: str) -> None:
    """Raises DefinitionError (at `here.recommendations...`) for a content's malformed recommendations request."""
    if RECOMMENDATIONS_KEY not in content:
        return
    ask = content[RECOMMENDATIONS_KEY]
    if not isinstance(ask, dict) or set(ask) - {"k", "include_bought"}:
        raise DefinitionError('recommendations is {"k": N} (and optionally "include_bought": true)',
                              f"{here}.{RECOMMENDATIONS_KEY}")
    k = ask.get("k", 4)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= RECOMMENDATIONS_MAX:
        raise DefinitionError(f"k is a whole number from 1 to {RECOMMENDATIONS_MAX}", f"{here}.{RECOMMENDATIONS_KEY}.k")
    if not isinstance(ask.get("include_bought", False), bool):
        raise DefinitionError("include_bought is true or false", f"{here}.{RECOMMENDATIONS_KEY}.include_bought")
