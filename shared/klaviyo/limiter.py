"""Client-side rate limiter for Klaviyo's two windows: burst (per second) and steady (per minute).

Klaviyo limits each endpoint per account with fixed 1 s and 1 min windows and answers 429 when
either is exceeded (reference/api-facts.md §2). This limiter keeps a sliding log of the requests
it let through per *endpoint family* and hands out the earliest start time that keeps every
window under its count; a sliding window that is never exceeded cannot exceed a fixed one either.

- Thread-safe and fair: a caller reserves its slot under a lock (slots are handed out in order),
  then sleeps outside the lock until its slot comes.
- It waits rather than fails. The only failure is a wait that would end after the caller's
  deadline: that raises DeadlineExceeded at once (retryable), so a function never overruns.
- A 429 (another process sharing the account's quota) blocks the family for its Retry-After.
- A caller with a cheaper alternative (realtime orders: one bulk request, else one POST per
  event) asks without waiting: `try_acquire` takes a slot only if one is free now, and
  `nonblocking()` is a view of the same limiter whose `acquire` does that or raises
  SlotUnavailable, for a client (whose transport calls `acquire`) that must not wait.

Use one limiter per process (`shared_limiter()`) and pass it to every KlaviyoClient:
`KlaviyoClient(key, url, revision, limiter=shared_limiter())`.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.deadline import Deadline
from shared.errors import DeadlineExceeded, RetryableError


class SlotUnavailable(RetryableError):
    """A non-blocking acquire found no slot free now (nothing was reserved)."""


@dataclass(frozen=True)
class Rate:
    count: int
    period: float  # seconds

    def __post_init__(self) -> None:
        if self.count < 1 or self.period <= 0:
            raise ValueError(f"invalid rate {self.count}/{self.period}s")


def per_second(count: int) -> Rate:
    return Rate(count, 1.0)


def per_minute(count: int) -> Rate:
    return Rate(count, 60.0)


# Per-endpoint limits from Klaviyo's OpenAPI (`x-klaviyo-ratelimit`), grouped by family. Where the
# spec now says 750/m the older 700/m is used (api-facts.md §2.1: "700/m as the safe design value").
DEFAULT_LIMITS: dict[str, tuple[Rate, ...]] = {
    # POST /api/profile-bulk-import-jobs and its GETs (job, import-errors) share one budget.
    "profile-bulk-import": (per_second(10), per_minute(150)),
    "event-bulk-create": (per_second(10), per_minute(150)),
    # catalog-{item,variant,category}-bulk-{create,update,delete}-jobs, POST and GET.
    "catalog-bulk": (per_second(75), per_minute(700)),
    "catalog-read": (per_second(350), per_minute(3500)),
    "catalog-write": (per_second(75), per_minute(700)),
    "profile-read": (per_second(75), per_minute(700)),
    "profile-write": (per_second(75), per_minute(700)),
    "events": (per_second(350), per_minute(3500)),
    "subscriptions": (per_second(75), per_minute(700)),
    "data-privacy": (per_second(3), per_minute(60)),
    # Anything else: the M tier, the most common limit among Klaviyo's endpoints.
    "default": (per_second(10), per_minute(150)),
}

_CATALOG_COLLECTIONS = frozenset({"catalog-items", "catalog-variants", "catalog-categories"})


def family_for(method: str, path: str) -> str:
    """The limit family of a request (`path` may be a template, a path or an absolute URL)."""
    segments = [s for s in urlsplit(path).path.split("/") if s]
    head = segments[1] if len(segments) > 1 and segments[0] == "api" else ""
    method = method.upper()
    if head == "profile-bulk-import-jobs":
        return "profile-bulk-import"
    if head == "event-bulk-create-jobs":
        return "event-bulk-create"
    if head.startswith("catalog-") and head.endswith("-jobs") and "-bulk-" in head:
        return "catalog-bulk"
    if head in _CATALOG_COLLECTIONS:
        return "catalog-read" if method == "GET" else "catalog-write"
    if head in ("profiles", "profile-import"):
        return "profile-read" if method == "GET" else "profile-write"
    if head == "events" and method == "POST":
        return "events"
    if head.startswith("profile-subscription-bulk-"):
        return "subscriptions"
    if head == "data-privacy-deletion-jobs":
        return "data-privacy"
    return "default"


class _Family:
    __slots__ = ("rates", "stamps", "blocked_until")

    def __init__(self, rates: tuple[Rate, ...]) -> None:
        self.rates = rates
        # Start times handed out, ascending; only the newest max(count) matter.
        self.stamps: deque[float] = deque(maxlen=max(r.count for r in rates))
        self.blocked_until = float("-inf")

    def next_slot(self, now: float, margin: float) -> float:
        start = max(now, self.blocked_until, self.stamps[-1] if self.stamps else now)
        # Every stamp is <= start, so pushing start later only empties windows: one pass suffices.
        for rate in self.rates:
            if len(self.stamps) >= rate.count:
                oldest_in_window = self.stamps[-rate.count]
                start = max(start, oldest_in_window + rate.period + margin)
        return start


class RateLimiter:
    """`limiter.acquire("POST", "/api/event-bulk-create-jobs", deadline=d)` blocks until the
    request may start; returns the seconds waited."""

    def __init__(
        self,
        limits: Mapping[str, tuple[Rate, ...]] | None = None,
        *,
        classify: Callable[[str, str], str] = family_for,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        margin: float = 0.02,
    ) -> None:
        table = dict(DEFAULT_LIMITS if limits is None else limits)
        if "default" not in table:
            table["default"] = DEFAULT_LIMITS["default"]
        for name, rates in table.items():
            if not rates:
                raise ValueError(f"family {name!r} has no rates")
        self._families = {name: _Family(tuple(rates)) for name, rates in table.items()}
        self._classify = classify
        self._clock = clock
        self._sleep = sleep
        # Requests sent at the window's edge can arrive inside it (network jitter): keep a margin.
        self._margin = margin
        self._lock = threading.Lock()
        self._blocking = True  # False in a `nonblocking()` view

    def family(self, method: str, path: str) -> str:
        name = self._classify(method, path)
        return name if name in self._families else "default"

    def reserve(self, method: str, path: str, *, deadline: Deadline = Deadline.never()) -> float:
        """Reserve the earliest allowed start time (clock units) without sleeping.

        Raises DeadlineExceeded (reserving nothing) if that time is after the deadline.
        """
        family = self._families[self.family(method, path)]
        with self._lock:
            now = self._clock()
            start = family.next_slot(now, self._margin)
            if start - now > 0 and start - now >= deadline.remaining():
                raise DeadlineExceeded(
                    f"rate limit: next {method} {urlsplit(path).path} slot is "
                    f"{start - now:.2f}s away, after the deadline"
                )
            family.stamps.append(start)
            return start

    def try_acquire(self, method: str, path: str) -> bool:
        """Take a slot for a request to `path` only if one is free now (never waits): True if
        taken, False (reserving nothing) if the request would have to wait for a window, a 429
        block, or callers already queued for a later slot."""
        family = self._families[self.family(method, path)]
        with self._lock:
            now = self._clock()
            start = family.next_slot(now, self._margin)
            if start > now:
                return False
            family.stamps.append(now)
            return True

    def nonblocking(self) -> RateLimiter:
        """A view of this limiter (the same windows, blocks and lock) whose `acquire` takes a slot
        free now or raises SlotUnavailable at once; `throttled` and the rest are shared."""
        view = copy.copy(self)
        view._blocking = False
        return view

    def acquire(self, method: str, path: str, *, deadline: Deadline = Deadline.never()) -> float:
        """Wait until a request to `path` may start; returns the seconds waited.

        In a `nonblocking()` view: 0 if a slot is free now, else SlotUnavailable.
        """
        if not self._blocking:
            if not self.try_acquire(method, path):
                raise SlotUnavailable(
                    f"rate limit: no {method} {urlsplit(path).path} slot free now")
            return 0.0
        start = self.reserve(method, path, deadline=deadline)
        wait = start - self._clock()
        if wait > 0:
            self._sleep(wait)
            return wait
        return 0.0

    def throttled(self, method: str, path: str, retry_after: float | None) -> None:
        """Klaviyo answered 429: nobody in this process starts a request of that family before
        Retry-After has passed (the quota is shared with whoever else uses the account)."""
        if not retry_after or retry_after <= 0:
            return
        family = self._families[self.family(method, path)]
        with self._lock:
            family.blocked_until = max(family.blocked_until, self._clock() + retry_after)


_shared: RateLimiter | None = None
_shared_lock = threading.Lock()


def shared_limiter() -> RateLimiter:
    """The process-wide limiter: Klaviyo's quota is per account, so every client in a process
    must draw from the same one."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = RateLimiter()
        return _shared


__all__ = [
    "DEFAULT_LIMITS",
    "Rate",
    "RateLimiter",
    "SlotUnavailable",
    "family_for",
    "per_minute",
    "per_second",
    "shared_limiter",
]
