"""Signing and verifying webhook bodies: the scheme every delivery uses, in plain Python a receiver can copy.

A delivery carries `X-CDP-Timestamp: <unix seconds>` and `X-CDP-Signature: v1=<hex>`, the hex being
HMAC-SHA256 keyed with the destination's secret over `<timestamp>.<body>` (the raw body bytes). A receiver
recomputes it over the bytes it received, compares in constant time, and refuses a timestamp too far from its
clock, so a captured request cannot be replayed later. The header may list several comma-separated `v1=`
signatures (several secrets during a rotation); one match is enough.

Standard library only, no Django.
"""
from __future__ import annotations

import hashlib
import hmac
import time

SCHEME = "v1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-CDP-Signature header value for this body sent at this unix time: "v1=<hex>"."""
    message = str(int(timestamp)).encode() + b"." + body
    return f"{SCHEME}=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(secret: str, header_timestamp: str, header_signature: str, body: bytes, tolerance_s: int = 300,
           now: float | None = None) -> bool:
    """Whether the headers prove the body came from the holder of `secret` within `tolerance_s` of `now`
    (default: this machine's clock). Never raises on malformed headers: they just do not verify."""
    if not header_timestamp or not header_timestamp.isascii() or not header_timestamp.isdigit():
        return False
    timestamp = int(header_timestamp)
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    # compare_digest on every candidate, so the time taken says nothing about how much of a guess matched.
    matched = False
    for candidate in (header_signature or "").split(","):
        matched |= hmac.compare_digest(candidate.strip().encode(), expected.encode())
    return matched
