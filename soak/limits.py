"""Klaviyo's per-account rate limits, scaled down, for the soak's peak phase.

Klaviyo limits each endpoint per *account* with two fixed windows (1 s burst, 1 min steady) and
answers 429 with Retry-After when either is full (reference/api-facts.md §2). Every function
instance has a limiter of its own (shared/klaviyo/limiter.py), so several instances together can
send more than the account allows: the fake must then refuse, as Klaviyo does, across all of them.

`scaled_limits(f)` is the connector's own limit table (DEFAULT_LIMITS, Klaviyo's published values)
with every count multiplied by `f` (at least 1); the periods stay 1 s and 60 s. The same table
is given to the fake (`AccountLimits`) and, through `python -m soak.serve --klaviyo-limit-scale`,
to each function instance's limiter, so the scaled run is the real one with a smaller account.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any


def scaled_limits(scale: float) -> dict[str, tuple[Any, ...]]:
    """DEFAULT_LIMITS with every count × `scale` (rounded, at least 1), periods unchanged."""
    from shared.klaviyo.limiter import DEFAULT_LIMITS, Rate

    if not 0 < scale <= 1:
        raise ValueError("the limit scale must be in (0, 1]")
    return {family: tuple(Rate(max(1, round(rate.count * scale)), rate.period)
                          for rate in rates)
            for family, rates in DEFAULT_LIMITS.items()}


def scale_process_limiter(scale: float) -> None:
    """Scale this process's limiter table in place, before any RateLimiter is built."""
    from shared.klaviyo import limiter

    limiter.DEFAULT_LIMITS.update(scaled_limits(scale))


class AccountLimits:
    """Fixed windows per endpoint family for one Klaviyo account, shared by every caller.

    `admit(method, path)` is None when the request may go on, else the Retry-After (whole
    seconds, as Klaviyo sends it) until the full window resets.
    """

    def __init__(self, limits: Mapping[str, tuple[Any, ...]],
                 clock: Callable[[], float] = time.time) -> None:
        from shared.klaviyo.limiter import family_for

        self._limits = dict(limits)
        self._family_for = family_for
        self._clock = clock
        self._lock = threading.Lock()
        # (family, period) -> (window start, requests admitted in it)
        self._windows: dict[tuple[str, float], tuple[float, int]] = {}
        self.admitted: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def admit(self, method: str, path: str) -> int | None:
        family = self._family_for(method, path)
        if family not in self._limits:
            family = "default"
        rates = self._limits[family]
        with self._lock:
            now = self._clock()
            wait = 0.0
            current = []
            for rate in rates:
                start = math.floor(now / rate.period) * rate.period  # fixed, aligned windows
                seen_start, count = self._windows.get((family, rate.period), (start, 0))
                if seen_start != start:
                    count = 0
                current.append((rate, start, count))
                if count >= rate.count:
                    wait = max(wait, start + rate.period - now)
            if wait > 0:
                self.refused[family] += 1
                return max(1, math.ceil(wait))
            for rate, start, count in current:
                self._windows[(family, rate.period)] = (start, count + 1)
            self.admitted[family] += 1
            return None


def throttled_answer(retry_after: int) -> tuple[str, list[tuple[str, str]], bytes]:
    """Klaviyo's 429: a JSON:API error document and Retry-After."""
    body = json.dumps({"errors": [{
        "id": str(uuid.uuid4()), "status": 429, "code": "throttled",
        "title": "Request was throttled.",
        "detail": f"Request was throttled. Expected available in {retry_after} seconds.",
        "source": {"pointer": "/data/"}, "meta": {}}]}).encode()
    headers = [("Content-Type", "application/vnd.api+json"), ("Retry-After", str(retry_after)),
               ("Content-Length", str(len(body)))]
    return "429 Too Many Requests", headers, body
