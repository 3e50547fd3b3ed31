"""Masking personal identifiers for people whose role may not see them (marketers). Pure functions.

Masked: email and phone identifiers, and the traits email, phone, name (first, last) and address, wherever
they appear: identifiers, profile traits, and the traits inside event payloads.
"""
from __future__ import annotations

PERSONAL_IDENTIFIER_TYPES = frozenset({"email", "phone"})
PERSONAL_TRAITS = frozenset({"email", "phone", "name", "first_name", "last_name", "firstName", "lastName",
                             "address"})


def mask_value(value) -> str:
    """Keeps enough to tell values apart at a glance, not enough to contact anyone."""
    if isinstance(value, dict):
        return "•••"
    text = str(value)
    if "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:1]}•••@{domain}"
    if text.startswith("+") or text.replace(" ", "").isdigit():
        return f"{text[:2]}•••{text[-2:]}" if len(text) > 4 else "•••"
    return f"{text[:1]}•••" if text else text


def mask_traits(traits: dict) -> dict:
    return {k: (mask_value(v) if k in PERSONAL_TRAITS and v not in (None, "") else v) for k, v in traits.items()}


def mask_identifier(kind: str, value: str) -> str:
    return mask_value(value) if kind in PERSONAL_IDENTIFIER_TYPES else value


def mask_payload(payload: dict) -> dict:
    masked = dict(payload)
    if isinstance(masked.get("traits"), dict):
        masked["traits"] = mask_traits(masked["traits"])
    context = masked.get("context")
    if isinstance(context, dict) and isinstance(context.get("traits"), dict):
        masked["context"] = {**context, "traits": mask_traits(context["traits"])}
    return masked
