"""Masking personal data for people whose role may not see it (marketers): the one masking path of the API,
the screens and the admin.

Masked: email and phone identifiers, and the traits email, phone, name (first, last, full) and address,
wherever they appear: identifiers, profile traits, event payloads, and merge records' reasons and linking
identifiers. `masks_for(user)` is the one decision of who sees what.
"""
from __future__ import annotations

PERSONAL_DATA_PERMISSION = "profiles.view_personal_data"
PERSONAL_IDENTIFIER_TYPES = frozenset({"email", "phone"})
# Trait keys compared without case, "_" or "-": firstName, first_name and First-Name are one key.
PERSONAL_TRAITS = frozenset({"email", "emailaddress", "phone", "phonenumber", "mobile", "name", "firstname",
                             "lastname", "fullname", "address", "street", "streetaddress"})


def _personal(key) -> bool:
    return str(key).lower().replace("_", "").replace("-", "") in PERSONAL_TRAITS


def mask_value(value) -> str:
    """Keeps enough to tell values apart at a glance, not enough to contact anyone."""
    if isinstance(value, (dict, list)):
        return "•••"
    text = str(value)
    if "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:1]}•••@{domain}"
    if text.startswith("+") or text.replace(" ", "").isdigit():
        return f"{text[:2]}•••{text[-2:]}" if len(text) > 4 else "•••"
    return f"{text[:1]}•••" if text else text


def mask_traits(traits: dict) -> dict:
    """Masks personal keys at any depth (`contact.phone` too)."""
    out = {}
    for key, value in traits.items():
        if _personal(key) and value not in (None, ""):
            out[key] = mask_value(value)
        elif isinstance(value, dict):
            out[key] = mask_traits(value)
        else:
            out[key] = value
    return out


def mask_identifier(kind: str, value: str) -> str:
    return mask_value(value) if kind in PERSONAL_IDENTIFIER_TYPES else value


def mask_linking(identifiers: list[str]) -> list[str]:
    """Merge records name their linking identifiers as "type:value"."""
    return [f"{kind}:{mask_identifier(kind, value)}" for kind, _, value in (i.partition(":") for i in identifiers)]


def mask_payload(payload: dict) -> dict:
    """A message as stored, with personal traits masked wherever they are (traits, context.traits,
    properties, nested objects)."""
    return mask_traits(payload)


def mask_merge_record(*, reason: str, linking_identifiers: list[str]) -> tuple[str, list[str]]:
    """A merge record's reason and linking identifiers, masked: the reason names the same identifiers."""
    masked = mask_linking(linking_identifiers)
    for plain, hidden in zip(linking_identifiers, masked):
        value = plain.partition(":")[2]
        if value:
            reason = reason.replace(value, hidden.partition(":")[2])
    return reason, masked


def masks_for(user) -> bool:
    """Whether this reader sees personal data masked."""
    return not user.has_perm(PERSONAL_DATA_PERMISSION)
