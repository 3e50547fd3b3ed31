"""Masking personal data for people whose role may not see it (marketers): the one masking path of the API,
the screens, the admin and the admin's export.

A value is masked for what its key says it is and for what it is, at any depth (objects in lists in objects):
- by key: email and phone keys in any spelling (`email`, `userEmail`, `customer_email`, `mobile`), names
  (`firstName`, `full_name`, and `name` inside traits, where it is the person's) and addresses;
- by value: any text holding an email address, a phone number that `phonenumbers` accepts as valid for its
  country (so order ids, prices, SKUs, dates and timestamps stay as they are), and any value equal to one of
  the profile's own email or phone identifiers;
- an entry of `context.externalIds` whose type is an email or a phone.
`masks_for(user)` is the one decision of who sees what.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import phonenumbers
from django.conf import settings

PERSONAL_DATA_PERMISSION = "profiles.view_personal_data"
PERSONAL_IDENTIFIER_TYPES = frozenset({"email", "phone"})
MASK = "•••"

# Keys compared without case, "_", "-", spaces or trailing digits: firstName, first_name, First-Name and
# email2 are one key each.
PERSONAL_KEYS = frozenset({
    "email", "emailaddress", "phone", "phonenumber", "mobile", "mobilenumber", "mobilephone", "tel", "telephone",
    "cellphone", "msisdn", "fax", "firstname", "lastname", "fullname", "givenname", "familyname", "surname",
    "middlename", "customername", "contactname", "billingname", "shippingname", "recipientname", "address",
    "street", "streetaddress", "addressline"})
# Any key ending so holds one: userEmail, customer_email, billingPhone, workMobile.
PERSONAL_KEY_ENDINGS = ("email", "emailaddress", "phone", "phonenumber", "mobile", "mobilenumber", "telephone")
# "name" is the person's only among traits; elsewhere it names a product, a page or an event.
TRAIT_ONLY_KEYS = frozenset({"name"})
TRAITS_KEYS = frozenset({"traits"})
# An identifier-like object ({"type": "email", "id": ...}, as in context.externalIds) has only these keys; a
# product of type "phone" has others, and its id is a SKU.
IDENTIFIER_VALUE_KEYS = frozenset({"id", "value"})
IDENTIFIER_OBJECT_KEYS = frozenset({"id", "value", "type", "collection", "encoding", "source"})

_KEY_NOISE = re.compile(r"[\s_\-]+|\d+$")
# Local part: RFC 5322 atext and dots, or a quoted string; domain: anything up to a space or a delimiter.
_EMAIL = re.compile(r"(?:\"[^\"\n]*\"|[^\s@,;:<>()\[\]\"]+)@[^\s@,;:<>()\[\]\"]+")
# A run of what a phone number is written with; the checks below decide whether a run is one.
_PHONE_RUN = re.compile(r"\+?\(?\d[\d ()./\-]{5,30}\d\)?")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}")
_NOT_DIGITS = re.compile(r"\D+")
_NOT_PHONE_CHARS = re.compile(r"[^\d+()./\- ]")
_DIGIT_COUNT = (7, 15)  # E.164 allows at most 15 digits; fewer than 7 is a quantity, not a number to call


class KnownValues:
    """A profile's own email and phone identifiers, as the forms a value may be compared in."""

    __slots__ = ("texts", "digits", "pattern", "replace_phone")

    def __init__(self, texts=frozenset(), digits=frozenset()):
        self.texts: frozenset[str] = texts  # lower-cased emails, E.164 phones
        self.digits: frozenset[str] = digits  # phones as digits only: with and without the country code
        # One pattern per profile finds them inside any text; the longest first, so one never hides part of another.
        self.pattern = re.compile("|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True)),
                                  re.IGNORECASE) if texts else None
        self.replace_phone = _phone_replacer(digits)


def known_values(identifiers: Iterable) -> KnownValues:
    """From (type, value) pairs or Identifier rows; only emails and phones count."""
    texts, digits = set(), set()
    for item in identifiers:
        kind, value = (item.type, item.value) if hasattr(item, "type") else item
        if kind not in PERSONAL_IDENTIFIER_TYPES or not value:
            continue
        texts.add(value.lower())
        if kind == "phone":
            digits.add(_NOT_DIGITS.sub("", value))
            try:
                digits.add(str(phonenumbers.parse(value, None).national_number))
            except phonenumbers.NumberParseException:
                pass
    return KnownValues(frozenset(texts), frozenset(d for d in digits if len(d) >= _DIGIT_COUNT[0]))


def personal_identifiers(profile_ids: Iterable[int]) -> dict[int, KnownValues]:
    """The known values of each of these profiles, in one query (a page of events needs one read, not one per
    event)."""
    from profiles.models import Identifier

    pairs: dict[int, list[tuple[str, str]]] = {}
    rows = Identifier.objects.filter(profile_id__in=set(profile_ids), type__in=PERSONAL_IDENTIFIER_TYPES)
    for profile_id, kind, value in rows.values_list("profile_id", "type", "value"):
        pairs.setdefault(profile_id, []).append((kind, value))
    return {profile_id: known_values(found) for profile_id, found in pairs.items()}


@functools.lru_cache(maxsize=1024)
def _personal_key(key: str, in_traits: bool) -> bool:
    norm = _KEY_NOISE.sub("", key.lower())
    if norm in PERSONAL_KEYS or norm.endswith(PERSONAL_KEY_ENDINGS):
        return True
    return in_traits and norm in TRAIT_ONLY_KEYS


@functools.lru_cache(maxsize=8192)
def _is_phone(text: str) -> bool:
    """Whether a run of phone characters is a real phone number (valid for its country, not a date)."""
    digits = _NOT_DIGITS.sub("", text)
    if not _DIGIT_COUNT[0] <= len(digits) <= _DIGIT_COUNT[1] or _DATE.fullmatch(text):
        return False
    if "." in text and (text.count(".") < 2 or set(text) - set("0123456789.+")):
        # Dots make a phone number only as its one separator (415.555.0100); else a price or a version.
        return False
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else settings.PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


def _boundary_ok(text: str, start: int, end: int) -> bool:
    """A run inside a longer token (ORD-2125550100, /p/4155550100x, 10:00) is not a phone number of its own."""
    if start > 0:
        before = text[start - 1]
        if before.isalnum() or before == "_" or (text[start] != "+" and before in ":./-"):
            return False
    if end < len(text):
        after = text[end]
        if after.isalnum() or after in "_:" or (after in "./-" and end + 1 < len(text) and text[end + 1].isalnum()):
            return False
    return True


def _phone_replacer(known_digits: frozenset[str]):
    """The replacement of a run of phone characters: masked when it is a phone number or a known one."""
    def replace(match: re.Match) -> str:
        run = match.group()
        if _boundary_ok(match.string, match.start(), match.end()) and (
                _is_phone(run) or (known_digits and _NOT_DIGITS.sub("", run) in known_digits)):
            return mask_value(run)
        return run
    return replace


def _mask_match(match: re.Match) -> str:
    return mask_value(match.group())


NOTHING_KNOWN = KnownValues()


def mask_text(text: str, known: KnownValues = NOTHING_KNOWN) -> str:
    """Free text with every email address, phone number and known identifier in it masked."""
    if known.pattern is not None:
        text = known.pattern.sub(_mask_match, text)
    if "@" in text:
        text = _EMAIL.sub(_mask_match, text)
    # Scanned in C; the replacement runs only for the few runs of 7 or more phone characters.
    text = _PHONE_RUN.sub(known.replace_phone, text)
    return text


def mask_value(value) -> str:
    """Keeps enough to tell values apart at a glance, not enough to contact anyone."""
    if isinstance(value, (dict, list)):
        return MASK
    text = str(value)
    if not text:
        return text
    if "@" in text:
        local, _, domain = text.rpartition("@")
        return f"{local[:1]}{MASK}@{domain}"
    if text.startswith("+") or text.replace(" ", "").isdigit() or not _NOT_PHONE_CHARS.search(text):
        return f"{text[:2]}{MASK}{text[-2:]}" if len(text) > 4 else MASK
    return f"{text[:1]}{MASK}"


def _mask_scalar(value, known: KnownValues):
    if isinstance(value, str):
        return mask_text(value, known)
    if known.digits and type(value) is int and str(value) in known.digits:
        return mask_value(value)
    # Numbers, booleans and null are never personal by themselves: prices, quantities, ids, flags.
    return value


def _mask(value, known: KnownValues, in_traits: bool):
    if isinstance(value, dict):
        return _mask_object(value, known, in_traits)
    if isinstance(value, list):
        return [_mask(item, known, in_traits) for item in value]
    return _mask_scalar(value, known)


def _mask_object(data: dict, known: KnownValues, in_traits: bool) -> dict:
    kind = data.get("type")
    # {"type": "email", "id": "..."}: context.externalIds, and identifier lists of other tools.
    identifier_like = (isinstance(kind, str) and _personal_key(kind, False)
                       and data.keys() <= IDENTIFIER_OBJECT_KEYS)
    out = {}
    for key, value in data.items():
        name = str(key)
        if "@" in name or name[:1] in "+0123456789":
            name = mask_text(name, known)  # an email or a phone used as a key
        if value in (None, "") or isinstance(value, bool):
            out[name] = value
        elif _personal_key(name, in_traits) or (identifier_like and name in IDENTIFIER_VALUE_KEYS):
            out[name] = mask_value(value)
        else:
            out[name] = _mask(value, known, in_traits or name in TRAITS_KEYS)
    return out


def mask_traits(traits: dict, known: KnownValues = NOTHING_KNOWN) -> dict:
    """A profile's traits (or any traits object) masked at any depth."""
    return _mask_object(traits, known, True)


def mask_payload(payload: dict, known: KnownValues = NOTHING_KNOWN) -> dict:
    """A message as stored, masked wherever its personal data is (traits, context.traits, properties,
    context.externalIds, nested objects and lists)."""
    return _mask_object(payload, known, False)


def mask_json(data, known: KnownValues = NOTHING_KNOWN):
    """Any JSON value outside traits (an identity rule's blocked values, a computed trait)."""
    return _mask(data, known, False)


def mask_identifier(kind: str, value: str, known: KnownValues = NOTHING_KNOWN) -> str:
    """An email or phone identifier masked; any other (a user id, an external id) masked where it holds one."""
    return mask_value(value) if _personal_key(kind, False) else mask_text(value, known)


def mask_linking(identifiers: list[str], known: KnownValues = NOTHING_KNOWN) -> list[str]:
    """Merge records name their linking identifiers as "type:value"."""
    return [f"{kind}:{mask_identifier(kind, value, known)}"
            for kind, _, value in (i.partition(":") for i in identifiers)]


def mask_merge_record(*, reason: str, linking_identifiers: list[str],
                      known: KnownValues = NOTHING_KNOWN) -> tuple[str, list[str]]:
    """A merge record's reason and linking identifiers, masked: the reason names the same identifiers."""
    masked = mask_linking(linking_identifiers, known)
    for plain, hidden in zip(linking_identifiers, masked):
        value = plain.partition(":")[2]
        if value:
            reason = reason.replace(value, hidden.partition(":")[2])
    return mask_text(reason, known), masked


def masks_for(user) -> bool:
    """Whether this reader sees personal data masked."""
    return not user.has_perm(PERSONAL_DATA_PERMISSION)
