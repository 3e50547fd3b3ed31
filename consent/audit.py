"""The audit chain's hashing: canonical JSON of an entry's content plus the previous hash. Pure functions."""
from __future__ import annotations

import hashlib
from datetime import datetime

import orjson

GENESIS = "0" * 64


def entry_hash(*, prev_hash: str, at: datetime, actor: str, action: str, target_type: str, target_id: int | None,
               details: dict) -> str:
    content = orjson.dumps({"prev": prev_hash, "at": at.isoformat(), "actor": actor, "action": action,
                            "target_type": target_type, "target_id": target_id, "details": details},
                           option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(content).hexdigest()
