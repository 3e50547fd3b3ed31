"""Seconds per step of a long job, kept with its result for the screens and the benchmark."""
from __future__ import annotations

import time


class Stopwatch:
    def __init__(self):
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        """Records the seconds since the previous lap (or the start) under `name`."""
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 3)
        self._last = now
