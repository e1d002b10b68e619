"""The bulk workers' shared Klaviyo budget (shared/bulk/budget.py): partitions' fixed slots never
coincide, keep every window Klaviyo counts under its limit whatever instance runs them, and leave
the other families to the process limiter. Virtual clock, then the real client against the fake."""

from __future__ import annotations

import threading
from itertools import pairwise
from typing import Any, cast

import pytest

from shared.bulk import budget
from shared.deadline import Deadline
from shared.errors import DeadlineExceeded
from shared.klaviyo.limiter import RateLimiter


def _share(kind: budget.Kind, **slots: Any) -> budget.Share:
    """The partition's slots, for a kind that has a paced family."""
    share = budget.share_for(kind, **slots)
    assert share is not None
    return share


class VirtualTime:
    def __init__(self, start: float = 1_000_000.123) -> None:
        self.now = start
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _max_in_window(starts: list[float], width: float) -> int:
    starts = sorted(starts)
    best, j = 0, 0
    for i, t in enumerate(starts):
        while starts[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.parametrize("k,share", [(1, 0.9), (4, 0.9), (8, 0.9), (10, 1.0)])
def test_partitions_together_stay_under_the_account_limits(k: int, share: float) -> None:
    time = VirtualTime()
    pacers = [budget.SlotPacer(_share("orders", index=i, count=k, share=share),
                               clock=time.clock, sleep=lambda s: None) for i in range(k)]
    starts: list[float] = []
    slots: list[int] = []
    owners: list[int] = []
    # Every partition asks as fast as it can, in an interleaving that moves the clock on.
    for step in range(3000):
        pacer = pacers[step % k]
        slot = pacer.acquire()
        slots.append(slot)
        owners.append(step % k)
        start = slot * pacer.share.slot_seconds
        starts.append(start)
        time.now = max(time.now, start)
    assert len(set(slots)) == len(slots)  # no slot used twice
    # each its own slots
    assert all(slot % k == owner for slot, owner in zip(slots, owners, strict=True))
    steady = 150 * share
    assert _max_in_window(starts, 60.0) <= steady + 1
    assert _max_in_window(starts, 1.0) <= 10
    span = max(starts) - min(starts)
    assert len(starts) / span * 60 > steady * 0.99  # and the budget is used, not wasted


def test_a_chain_moving_to_another_instance_never_reuses_a_slot() -> None:
    time = VirtualTime()
    share = _share("customers", index=2, count=4, share=0.9)
    first = budget.SlotPacer(share, clock=time.clock, sleep=time.sleep)
    used = [first.acquire() for _ in range(3)]
    # The next task runs at once on another instance with the slot saved on the partition.
    second = budget.SlotPacer(share, last_slot=first.last_slot, clock=time.clock,
                              sleep=time.sleep)
    nxt = second.acquire()
    assert nxt > max(used) and nxt % 4 == 2
    fresh = budget.SlotPacer(share, clock=time.clock, sleep=time.sleep)  # without it ...
    assert fresh.acquire() <= max(used) + 4  # ... the slot could be taken twice


def test_a_slot_after_the_deadline_raises_at_once() -> None:
    time = VirtualTime()
    pacer = budget.SlotPacer(_share("orders", index=7, count=8, share=0.1),
                             clock=time.clock, sleep=time.sleep)
    pacer.acquire()
    with pytest.raises(DeadlineExceeded):
        pacer.acquire(deadline=Deadline.after(0.5))
    assert time.now < 1_000_000.123 + 60  # it did not sleep through


def test_only_the_partitions_family_is_paced() -> None:
    time = VirtualTime()
    inner = RateLimiter(clock=time.clock, sleep=time.sleep)
    paced = budget.PacedLimiter(inner)
    pacer = budget.SlotPacer(_share("orders", index=0, count=8, share=0.9),
                             clock=time.clock, sleep=time.sleep)
    with budget.pacing(pacer):
        t0 = time.now
        paced.acquire("POST", "/api/event-bulk-create-jobs")
        paced.acquire("POST", "/api/event-bulk-create-jobs")
        assert time.now - t0 >= 8 * 60 / 135 - 1e-6  # the partition's next own slot
        t1 = time.now
        paced.acquire("GET", "/api/catalog-items")  # another family: no slot needed
        assert time.now == t1
    paced.acquire("POST", "/api/event-bulk-create-jobs")  # outside a partition: no slots
    assert pacer.last_slot is not None and paced.throttled is not None


def test_no_family_for_catalog_kinds() -> None:
    assert budget.share_for("products", index=0, count=1, share=0.9) is None


class _RecordingPacer(budget.SlotPacer):
    """A pacer that remembers the slots it handed out."""

    def __init__(self, share: budget.Share) -> None:
        super().__init__(share)
        self.slots: list[int] = []

    def acquire(self, *, deadline: Deadline = Deadline.never()) -> int:
        slot = super().acquire(deadline=deadline)
        self.slots.append(slot)
        return slot


def test_paced_client_against_the_fake(klaviyo: Any) -> None:
    """The real KlaviyoClient through PacedLimiter: its bulk POSTs start at the partition's slots
    (two partitions of 8 interleave and never share a slot's second)."""
    import time as real_time

    from shared.config import DEFAULT_KLAVIYO_REVISION
    from shared.klaviyo.client import KlaviyoClient

    # PacedLimiter stands in for the RateLimiter it wraps (forwarding what it does not pace), as
    # default_exporters passes it; the client's parameter names the RateLimiter.
    paced = cast(RateLimiter, budget.PacedLimiter(RateLimiter()))
    client = KlaviyoClient(klaviyo.api_key, klaviyo.url, DEFAULT_KLAVIYO_REVISION, limiter=paced)
    profile = {"email": "budget@example.com", "external_id": "b-1"}
    share = 20.0  # 8 partitions at 20×/min slots of 60/(150×20) s: fast enough for a test
    gap = 8 * 60 / (150 * share)  # one partition's slots are this far apart
    for index in (0, 1):
        pacer = _RecordingPacer(_share("customers", index=index, count=8, share=1.0,
                                                 per_minute=150 * share))
        slots = pacer.slots
        began = real_time.time()
        with budget.pacing(pacer):
            for _ in range(3):
                client.create_profile_bulk_import_job([profile], deadline=Deadline.after(10))
        assert real_time.time() - began >= 2 * gap * 0.95  # three requests, three own slots
        assert len(slots) == 3 and all(s % 8 == index for s in slots)
        assert all(b > a for a, b in pairwise(slots))  # never the same slot twice
    posts = klaviyo.requests_to("POST", "/api/profile-bulk-import-jobs")
    assert len(posts) == 6
