"""Seeded random fault injection for the HTTP fakes (Klaviyo and commercetools).

`RandomFaults.draw(key)` decides whether one request fails and how. The decision depends only on
the seed, the request (method, path, query, body) and how many times that same request has been
seen before, never on thread timing: a run with the same seed and the same requests injects the
same faults, however the concurrent requests interleave. One request is faulted at most
`max_per_request` times in a row, so a retried write always gets through eventually (the point is
to exercise the retry paths, not to make progress depend on luck).

Used by `FakeKlaviyo.random_faults` and `FakeCommercetools.random_faults` (both None by default).
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

# Fault kinds: an HTTP status ("429", "500", "503", ...), "slow" (answered normally after a delay
# close to the client's timeout, so some answers arrive just after the client gave up while the
# write still happens) or "disconnect" (the connection is dropped without an answer).
KLAVIYO_MIX: Mapping[str, float] = {"429": 0.35, "500": 0.15, "503": 0.2, "slow": 0.15,
                                    "disconnect": 0.15}
CT_MIX: Mapping[str, float] = {"503": 1.0}


@dataclass(frozen=True)
class Draw:
    kind: str
    status: int | None = None
    retry_after: float | None = None
    delay: float | None = None
    disconnect: bool = False


@dataclass
class RandomFaults:
    seed: int
    rate: float = 0.05
    mix: Mapping[str, float] = field(default_factory=lambda: dict(KLAVIYO_MIX))
    retry_after: tuple[float, float] = (0.2, 1.5)  # seconds, for 429 answers
    slow: tuple[float, float] = (1.0, 3.0)  # seconds, for "slow" answers
    max_per_request: int = 2
    counts: Counter[str] = field(default_factory=Counter)  # injected faults by kind
    requests: int = 0  # requests that were considered
    _seen: dict[str, int] = field(default_factory=dict, repr=False)
    _streak: dict[str, int] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if not self.mix or any(w < 0 for w in self.mix.values()):
            raise ValueError("mix needs at least one kind with a non-negative weight")

    @staticmethod
    def request_key(method: str, path: str, query: Mapping[str, object] | None = None,
                    body: bytes = b"") -> str:
        parts = [method.upper(), path]
        if query:
            parts.append("&".join(f"{k}={query[k]}" for k in sorted(query)))
        parts.append(hashlib.sha1(body).hexdigest() if body else "")
        return "|".join(parts)

    def draw(self, key: str) -> Draw | None:
        """The fault for this request (None: answer normally)."""
        with self._lock:
            self.requests += 1
            n = self._seen.get(key, 0)
            self._seen[key] = n + 1
            if self._streak.get(key, 0) >= self.max_per_request:
                self._streak[key] = 0
                return None
            rnd = random.Random(f"{self.seed}|{key}|{n}")
            if rnd.random() >= self.rate:
                self._streak[key] = 0
                return None
            kinds = list(self.mix)
            kind = rnd.choices(kinds, weights=[self.mix[k] for k in kinds])[0]
            self._streak[key] = self._streak.get(key, 0) + 1
            self.counts[kind] += 1
        if kind == "slow":
            return Draw(kind, delay=rnd.uniform(*self.slow))
        if kind == "disconnect":
            return Draw(kind, disconnect=True)
        status = int(kind)
        retry_after = round(rnd.uniform(*self.retry_after), 2) if status == 429 else None
        return Draw(kind, status=status, retry_after=retry_after)

    @property
    def injected(self) -> int:
        return sum(self.counts.values())


__all__ = ["CT_MIX", "KLAVIYO_MIX", "Draw", "RandomFaults"]
