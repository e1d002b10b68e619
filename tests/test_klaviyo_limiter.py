"""The client-side Klaviyo rate limiter: families, burst and steady windows, fairness across
threads, deadlines, 429 back-off, and its use by the client. No real sleeping: a fake clock."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from shared.config import DEFAULT_KLAVIYO_REVISION
from shared.deadline import Deadline
from shared.errors import DeadlineExceeded, KlaviyoError
from shared.klaviyo import KlaviyoClient
from shared.klaviyo.limiter import (
    DEFAULT_LIMITS,
    Rate,
    RateLimiter,
    SlotUnavailable,
    family_for,
    per_minute,
    per_second,
    shared_limiter,
)


class FakeClock:
    """`clock()` and `sleep()` for the limiter: sleeping advances time, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(clock: FakeClock, limits: dict[str, tuple[Rate, ...]] | None = None,
            margin: float = 0.0) -> RateLimiter:
    return RateLimiter(limits, clock=clock, sleep=clock.sleep, margin=margin)


@pytest.mark.parametrize(
    ("method", "path", "family"),
    [
        ("POST", "/api/profile-bulk-import-jobs", "profile-bulk-import"),
        ("GET", "/api/profile-bulk-import-jobs/{id}", "profile-bulk-import"),
        ("GET", "/api/profile-bulk-import-jobs/{id}/import-errors", "profile-bulk-import"),
        ("POST", "/api/event-bulk-create-jobs", "event-bulk-create"),
        ("POST", "/api/catalog-item-bulk-create-jobs", "catalog-bulk"),
        ("GET", "/api/catalog-variant-bulk-update-jobs/{id}", "catalog-bulk"),
        ("POST", "/api/catalog-category-bulk-delete-jobs", "catalog-bulk"),
        ("GET", "/api/catalog-items", "catalog-read"),
        ("GET", "/api/catalog-items/{id}/variants", "catalog-read"),
        ("GET", "http://127.0.0.1:1/api/catalog-categories?page%5Bcursor%5D=x", "catalog-read"),
        ("PATCH", "/api/catalog-items/{id}", "catalog-write"),
        ("POST", "/api/catalog-variants", "catalog-write"),
        ("DELETE", "/api/catalog-categories/{id}", "catalog-write"),
        ("POST", "/api/profile-import", "profile-write"),
        ("GET", "/api/profiles", "profile-read"),
        ("POST", "/api/events", "events"),
        ("POST", "/api/profile-subscription-bulk-create-jobs", "subscriptions"),
        ("POST", "/api/profile-subscription-bulk-delete-jobs", "subscriptions"),
        ("POST", "/api/data-privacy-deletion-jobs", "data-privacy"),
        ("GET", "/api/lists", "default"),
        ("GET", "/", "default"),
    ],
)
def test_family_for(method: str, path: str, family: str) -> None:
    assert family_for(method, path) == family
    assert family in DEFAULT_LIMITS


def test_default_limits_are_klaviyos() -> None:
    assert DEFAULT_LIMITS["profile-bulk-import"] == (per_second(10), per_minute(150))
    assert DEFAULT_LIMITS["event-bulk-create"] == (per_second(10), per_minute(150))
    assert DEFAULT_LIMITS["catalog-bulk"] == (per_second(75), per_minute(700))


# Each row: (burst, steady) limits, request offsets in seconds from the start (a request is made
# at max(offset, when the previous one started)), and the expected start times.
@pytest.mark.parametrize(
    ("rates", "offsets", "starts"),
    [
        # Within the burst: all at once.
        ((Rate(3, 1), Rate(10, 60)), [0, 0, 0], [0, 0, 0]),
        # The 4th waits for the 1st to leave the 1 s window.
        ((Rate(3, 1), Rate(10, 60)), [0, 0, 0, 0], [0, 0, 0, 1]),
        ((Rate(3, 1), Rate(10, 60)), [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 2]),
        # Spread-out requests never wait.
        ((Rate(3, 1), Rate(10, 60)), [0, 0.5, 1, 1.5, 2], [0, 0.5, 1, 1.5, 2]),
        # The steady window: the 5th waits until the 1st is a minute old.
        ((Rate(10, 1), Rate(4, 60)), [0, 0, 0, 0, 0], [0, 0, 0, 0, 60]),
        ((Rate(10, 1), Rate(4, 60)), [0, 10, 20, 30, 40, 50], [0, 10, 20, 30, 60, 70]),
        # Both at once: burst 2/s, steady 3/min.
        ((Rate(2, 1), Rate(3, 60)), [0, 0, 0, 0], [0, 0, 1, 60]),
    ],
)
def test_windows(rates: tuple[Rate, ...], offsets: list[float], starts: list[float]) -> None:
    clock = FakeClock()
    start = clock.now
    lim = limiter(clock, {"default": rates})
    got = []
    for offset in offsets:
        if clock.now < start + offset:
            clock.now = start + offset
        lim.acquire("POST", "/api/anything")
        got.append(round(clock.now - start, 6))
    assert got == starts


def test_klaviyo_profile_bulk_limits_150_per_minute() -> None:
    clock = FakeClock()
    start = clock.now
    lim = limiter(clock)
    for _ in range(150):
        lim.acquire("POST", "/api/profile-bulk-import-jobs")
    # 10 per second: the 150th starts in the 15th second.
    assert clock.now - start == pytest.approx(14.0)
    lim.acquire("GET", "/api/profile-bulk-import-jobs/{id}")  # the job GET shares the budget
    assert clock.now - start == pytest.approx(60.0)


def test_families_are_independent() -> None:
    clock = FakeClock()
    lim = limiter(clock)
    for _ in range(10):
        lim.acquire("POST", "/api/event-bulk-create-jobs")
    # Event bulk is at its burst limit; catalog bulk and reads are not.
    assert lim.acquire("POST", "/api/catalog-item-bulk-create-jobs") == 0
    assert lim.acquire("GET", "/api/catalog-items") == 0
    assert lim.acquire("POST", "/api/event-bulk-create-jobs") == pytest.approx(1.0)


def test_margin_is_added_to_each_window() -> None:
    clock = FakeClock()
    lim = limiter(clock, {"default": (Rate(1, 1),)}, margin=0.05)
    lim.acquire("GET", "/x")
    assert lim.acquire("GET", "/x") == pytest.approx(1.05)


def test_wait_past_the_deadline_fails_at_once_and_reserves_nothing() -> None:
    clock = FakeClock()
    lim = limiter(clock, {"default": (Rate(1, 1), Rate(2, 60))})
    lim.acquire("GET", "/x")
    lim.acquire("GET", "/x")  # waits 1 s
    assert clock.slept == [pytest.approx(1.0)]

    class ShortDeadline(Deadline):
        def remaining(self) -> float:
            return 5.0

    with pytest.raises(DeadlineExceeded):
        lim.acquire("GET", "/x", deadline=ShortDeadline())  # the next slot is 59 s away
    assert clock.slept == [pytest.approx(1.0)]  # failed without sleeping
    # Nothing was reserved: with time the next request gets the slot it would have had.
    clock.advance(59)
    assert lim.acquire("GET", "/x") == 0


def test_throttled_blocks_the_family_for_retry_after() -> None:
    clock = FakeClock()
    lim = limiter(clock)
    lim.throttled("POST", "/api/event-bulk-create-jobs", 3)
    assert lim.acquire("GET", "/api/catalog-items") == 0  # other families unaffected
    assert lim.acquire("POST", "/api/event-bulk-create-jobs") == pytest.approx(3.0)
    lim.throttled("POST", "/api/event-bulk-create-jobs", None)  # no Retry-After: no block
    lim.throttled("POST", "/api/event-bulk-create-jobs", 0)
    assert lim.acquire("POST", "/api/event-bulk-create-jobs") == 0


def test_try_acquire_takes_only_a_slot_free_now() -> None:
    clock = FakeClock()
    lim = limiter(clock, {"default": (Rate(2, 1), Rate(3, 60))})
    assert lim.try_acquire("GET", "/x") and lim.try_acquire("GET", "/x")
    assert not lim.try_acquire("GET", "/x")  # the burst is used up: would wait 1 s
    assert clock.slept == []
    clock.advance(1)
    assert lim.try_acquire("GET", "/x")
    clock.advance(1)
    assert not lim.try_acquire("GET", "/x")  # the steady window (3/min) is used up
    # A refusal reserved nothing: the waiting caller gets the slot the window allows.
    assert lim.acquire("GET", "/x") == pytest.approx(58.0)


def test_try_acquire_respects_429_blocks_and_callers_already_queued() -> None:
    clock = FakeClock()
    lim = limiter(clock, {"default": (Rate(1, 1),)})
    lim.throttled("GET", "/x", 5)
    assert not lim.try_acquire("GET", "/x")
    clock.advance(5)
    assert lim.try_acquire("GET", "/x")
    clock.advance(1)
    lim.reserve("GET", "/x")  # now: free
    lim.reserve("GET", "/x")  # a second caller queued for a slot 1 s away
    clock.advance(1.5)
    assert not lim.try_acquire("GET", "/x")  # does not jump the queue (the slot at +1 s)


def test_nonblocking_view_shares_the_windows_and_never_sleeps() -> None:
    clock = FakeClock()
    lim = limiter(clock)
    view = lim.nonblocking()
    for _ in range(9):
        lim.acquire("POST", "/api/event-bulk-create-jobs")
    assert view.acquire("POST", "/api/event-bulk-create-jobs") == 0  # the 10th of the burst
    with pytest.raises(SlotUnavailable) as caught:
        view.acquire("POST", "/api/event-bulk-create-jobs")
    assert caught.value.retryable
    assert view.acquire("POST", "/api/events") == 0  # other families unaffected
    assert clock.slept == []
    # The limiter itself still waits, for the slot the refusal did not take.
    assert lim.acquire("POST", "/api/event-bulk-create-jobs") == pytest.approx(1.0)
    view.throttled("POST", "/api/catalog-items", 2)  # a 429 seen by the view blocks everyone
    with pytest.raises(SlotUnavailable):
        view.acquire("POST", "/api/catalog-items")
    assert lim.acquire("POST", "/api/catalog-items") == pytest.approx(2.0)


def test_unknown_family_from_a_custom_classifier_falls_back_to_default() -> None:
    clock = FakeClock()
    lim = RateLimiter({"default": (Rate(1, 1),)}, classify=lambda m, p: "nope", clock=clock,
                      sleep=clock.sleep, margin=0)
    assert lim.family("GET", "/x") == "default"
    lim.acquire("GET", "/x")
    assert lim.acquire("GET", "/y") == pytest.approx(1.0)


def test_invalid_rates_are_refused() -> None:
    with pytest.raises(ValueError):
        Rate(0, 1)
    with pytest.raises(ValueError):
        Rate(1, 0)
    with pytest.raises(ValueError):
        RateLimiter({"default": ()})


def test_threads_get_distinct_fair_slots_within_every_window() -> None:
    clock = FakeClock()
    lim = limiter(clock, {"default": (Rate(5, 1), Rate(40, 60))})
    starts: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def worker() -> None:
        barrier.wait()
        for _ in range(5):
            start = lim.reserve("POST", "/api/anything")
            with lock:
                starts.append(start)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(starts) == 100
    starts.sort()
    for i, s in enumerate(starts):
        assert sum(1 for t in starts[: i + 1] if t > s - 1) <= 5
        assert sum(1 for t in starts[: i + 1] if t > s - 60) <= 40
    # Nobody waits longer than needed: 40 per minute, 5 per second.
    assert starts[39] - starts[0] == pytest.approx(7.0)
    assert starts[40] - starts[0] == pytest.approx(60.0)


def test_shared_limiter_is_one_per_process() -> None:
    assert shared_limiter() is shared_limiter()


# ---- wired into the client -------------------------------------------------------------------


class RecordingLimiter(RateLimiter):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.throttles: list[tuple[str, str, float | None]] = []

    def acquire(self, method: str, path: str, *, deadline: Deadline = Deadline.never()) -> float:
        self.calls.append((method, path))
        return super().acquire(method, path, deadline=deadline)

    def throttled(self, method: str, path: str, retry_after: float | None) -> None:
        self.throttles.append((method, path, retry_after))
        super().throttled(method, path, retry_after)


@pytest.fixture
def limited_client(klaviyo: Any) -> Any:
    recorder = RecordingLimiter()
    client = KlaviyoClient(klaviyo.api_key, klaviyo.url, DEFAULT_KLAVIYO_REVISION,
                           timeout=(1.0, 2.0), retry_base=0.01, retry_cap=0.02, limiter=recorder)
    yield client, recorder
    client.close()


def test_client_takes_a_slot_for_every_attempt(limited_client: Any, klaviyo: Any) -> None:
    client, recorder = limited_client
    klaviyo.inject(429, times=1, path="/api/event-bulk-create-jobs", retry_after=0.1)
    klaviyo.inject(503, times=1, path="/api/event-bulk-create-jobs")
    entries = [{"profile": {"email": "a@example.org"},
                "events": [{"properties": {}, "unique_id": "u1",
                            "metric": {"data": {"type": "metric",
                                                "attributes": {"name": "Placed Order"}}}}]}]
    client.create_event_bulk_job(entries)
    assert recorder.calls == [("POST", "/api/event-bulk-create-jobs")] * 3
    assert recorder.throttles == [("POST", "/api/event-bulk-create-jobs", 0.1)]
    assert len(klaviyo.events) == 1


def test_client_without_limiter_is_unchanged(klaviyo_client: Any, klaviyo: Any) -> None:
    assert klaviyo_client.limiter is None
    assert list(klaviyo_client.iter_catalog_items()) == []


BULK_ENTRIES = [{"profile": {"email": "a@example.org"},
                 "events": [{"properties": {}, "unique_id": "u1",
                             "metric": {"data": {"type": "metric",
                                                 "attributes": {"name": "Placed Order"}}}}]}]


def test_bulk_job_now_is_one_attempt_and_tells_the_limiter_of_a_429(
    limited_client: Any, klaviyo: Any
) -> None:
    client, recorder = limited_client
    klaviyo.inject(429, times=1, path="/api/event-bulk-create-jobs", retry_after=30)
    with pytest.raises(KlaviyoError) as caught:
        client.create_event_bulk_job_now(BULK_ENTRIES)
    assert caught.value.status == 429
    assert len(klaviyo.requests) == 1  # not retried, Retry-After not waited out
    assert recorder.throttles == [("POST", "/api/event-bulk-create-jobs", 30.0)]
    # The family is blocked for 30 s: the next one is not even sent.
    with pytest.raises(SlotUnavailable):
        client.create_event_bulk_job_now(BULK_ENTRIES)
    assert len(klaviyo.requests) == 1
    assert client.max_attempts == 8 and client.limiter is recorder  # the client is unchanged


def test_bulk_job_now_never_waits_for_the_limiter(limited_client: Any, klaviyo: Any) -> None:
    client, recorder = limited_client
    for _ in range(9):
        assert recorder.try_acquire("POST", "/api/event-bulk-create-jobs")
    client.create_event_bulk_job_now(BULK_ENTRIES)  # the 10th slot of the burst: sent
    assert len(klaviyo.events) == 1
    with pytest.raises(SlotUnavailable):
        client.create_event_bulk_job_now(BULK_ENTRIES)  # the 11th would wait ~1 s
    assert len(klaviyo.requests) == 1


def test_bulk_job_now_raises_other_failures_at_once(klaviyo_client: Any, klaviyo: Any) -> None:
    klaviyo.inject(503, times=1, path="/api/event-bulk-create-jobs")
    with pytest.raises(KlaviyoError) as caught:
        klaviyo_client.create_event_bulk_job_now(BULK_ENTRIES)
    assert caught.value.status == 503 and len(klaviyo.requests) == 1
    klaviyo_client.create_event_bulk_job_now(BULK_ENTRIES)  # no limiter: sent
    assert len(klaviyo.events) == 1
