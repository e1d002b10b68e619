"""One Klaviyo budget for all the partitions of the bulk jobs: fixed time slots, no coordination.

Klaviyo's limits are per account: every partition, worker instance and the realtime function draw
on the same 150 bulk requests a minute. Per-process limiters would each spend all of it and answer
each other's 429s; one token bucket in Firestore would be written by every request (a document
sustains about one write a second). Instead the bulk share of a family's steady limit is cut into
a fixed grid of time slots, `60 s / (share × limit)` long, and partition i of K owns every slot
n with n mod K = i. A request of that family starts only at the beginning of one of its
partition's slots, at most one per slot. The slots of different partitions never coincide, so all
partitions together start at most `share × limit` (+1 at a window's edge) requests a minute,
and at most `1 / slot` a second, whichever instance runs them. The only shared thing is the
clock (Cloud instances are NTP-synchronised far below a slot's length).

A partition's chain moves between instances; its last used slot is saved with each batch
(`Job.lastSlot`), so the next task never reuses a slot the previous one took. `1 - share` of the
limit is left to the realtime function (its Placed Order bulk requests take a slot only when one
is free and fall back to single events otherwise). 429s are still honoured: the process-wide
limiter underneath blocks the family for Retry-After.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from shared.bulk.base import Kind
from shared.deadline import Deadline
from shared.errors import DeadlineExceeded
from shared.klaviyo.limiter import DEFAULT_LIMITS, RateLimiter, family_for

# The Klaviyo family each partitionable kind's bulk writes belong to.
FAMILIES: dict[Kind, str] = {
    "customers": "profile-bulk-import",
    "orders": "event-bulk-create",
}

__all__ = ["FAMILIES", "PacedLimiter", "SlotPacer", "Share", "pacing", "share_for",
           "steady_per_minute"]


def steady_per_minute(family: str) -> float:
    """A family's steady limit in requests per minute (Klaviyo's published per-account limit)."""
    rates = DEFAULT_LIMITS.get(family, DEFAULT_LIMITS["default"])
    return min(r.count * 60.0 / r.period for r in rates)


@dataclass(frozen=True)
class Share:
    """Partition `index` of `count` owns the slots n ≡ index (mod count) of `family`'s grid."""

    family: str
    slot_seconds: float
    index: int
    count: int


def share_for(kind: Kind, *, index: int, count: int, share: float,
              per_minute: float | None = None) -> Share | None:
    """The slots of partition `index` of `count` (None: the kind has no paced family)."""
    family = FAMILIES.get(kind)
    if family is None:
        return None
    limit = per_minute if per_minute is not None else steady_per_minute(family)
    return Share(family=family, slot_seconds=60.0 / (limit * share), index=index, count=count)


class SlotPacer:
    """Hands out one partition's slots in order (thread-safe); sleeps until the slot begins."""

    def __init__(self, share: Share, *, last_slot: int | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.share = share
        self.last_slot = last_slot
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.waited = 0.0

    def _next(self, now: float) -> int:
        s = self.share
        n = math.ceil(now / s.slot_seconds - 1e-9)
        if self.last_slot is not None:
            n = max(n, self.last_slot + 1)
        return n + (s.index - n) % s.count

    def acquire(self, *, deadline: Deadline = Deadline.never()) -> int:
        """Wait for the partition's next slot; returns its number. DeadlineExceeded (retryable,
        nothing taken) when it begins after the deadline."""
        with self._lock:
            now = self._clock()
            slot = self._next(now)
            wait = slot * self.share.slot_seconds - now
            if wait > 0 and wait >= deadline.remaining():
                raise DeadlineExceeded(f"Klaviyo budget: next slot is {wait:.2f}s away, after "
                                       "the deadline")
            self.last_slot = slot
        if wait > 0:
            self._sleep(wait)
            self.waited += wait
        return slot


_current: contextvars.ContextVar[SlotPacer | None] = contextvars.ContextVar(
    "bulk_slot_pacer", default=None)


@contextmanager
def pacing(pacer: SlotPacer | None) -> Iterator[SlotPacer | None]:
    """Requests made in this context (and in threads started with a copy of it) draw on
    `pacer`'s slots."""
    token = _current.set(pacer)
    try:
        yield pacer
    finally:
        _current.reset(token)


class PacedLimiter:
    """The process-wide RateLimiter, plus the current partition's slots for its family.

    The KlaviyoClient's transport calls `acquire` before every attempt and `throttled` on a 429;
    everything else is the wrapped limiter's."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    def acquire(self, method: str, path: str, *, deadline: Deadline = Deadline.never()) -> float:
        pacer = _current.get()
        waited = 0.0
        if pacer is not None and family_for(method, path) == pacer.share.family:
            before = pacer.waited
            pacer.acquire(deadline=deadline)
            waited = pacer.waited - before
        return waited + self.limiter.acquire(method, path, deadline=deadline)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.limiter, name)
