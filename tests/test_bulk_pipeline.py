"""The exporters' shared read loop (shared/bulk/exporters/keyset.py) over the HTTP fakes: the next
commercetools page is read while a batch's requests are sent, several event requests are in
flight at once (each on the partition's budget slots), the cursor is that of what was sent, the
`since` filter, and which exporters can delete."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from shared.bulk import budget
from shared.bulk.base import BatchResult, DeletingExporter, Kind
from shared.bulk.exporters import build_exporter
from shared.bulk.exporters.customers import CustomersExporter
from shared.bulk.exporters.keyset import KeysetExporter
from shared.bulk.exporters.orders import OrdersExporter
from shared.bulk.exporters.pages import since_predicate
from shared.bulk.exporters.products import ProductsExporter
from shared.config import DEFAULT_KLAVIYO_REVISION, load_settings
from shared.deadline import Deadline
from shared.errors import KlaviyoError
from shared.klaviyo import KlaviyoClient
from shared.klaviyo.limiter import RateLimiter
from shared.state.jobs import JobStatus
from shared.state.memory_store import MemoryStore
from tests.bulk_helpers import drain, make_runner
from tests.test_bulk_exporters import (
    FAST,
    customer_doc,
    order_doc,
    posts,
    product_doc,
    quick_jobs,
    run_all,
)

__all__ = ["quick_jobs"]  # the fixture, used here too


class Timeline:
    """When each wrapped call started and ended (monotonic), per name, across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[str, float, float]] = []
        self.running = 0
        self.most = 0  # most calls of `sends` running at once

    def wrap(self, name: str, fn: Callable[..., Any], *, delay: float = 0.0,
             concurrent: bool = False) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            if concurrent:
                with self.lock:
                    self.running += 1
                    self.most = max(self.most, self.running)
            try:
                time.sleep(delay)
                return fn(*args, **kwargs)
            finally:
                if concurrent:
                    with self.lock:
                        self.running -= 1
                with self.lock:
                    self.spans.append((name, start, time.monotonic()))
        return wrapped

    def of(self, name: str) -> list[tuple[float, float]]:
        return sorted((s, e) for n, s, e in self.spans if n == name)


def events_per_request(calls: list[Any]) -> list[int]:
    """Events in each event bulk request the exporter made (its calls, not the fake's log: a
    retry after a timeout on a loaded machine would show there twice)."""
    return [sum(len(entry["events"]) for entry in entries) for entries in calls]


def recording(calls: list[Any], fn: Callable[..., Any]) -> Callable[..., Any]:
    def record(entries: Any, **kwargs: Any) -> Any:
        calls.append(entries)
        return fn(entries, **kwargs)
    return record


# ---- pipelining -----------------------------------------------------------------------------


def test_pages_are_read_while_requests_are_in_flight(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any, monkeypatch: Any,
) -> None:
    for i in range(1000):
        ct.add("orders", order_doc(i))  # 3 events each: 3,000 events
    timeline = Timeline()
    calls: list[Any] = []
    monkeypatch.setattr(ct_client, "query_page", timeline.wrap("read", ct_client.query_page))
    monkeypatch.setattr(klaviyo_client, "create_event_bulk_job", timeline.wrap(
        "send", recording(calls, klaviyo_client.create_event_bulk_job), delay=0.4,
        concurrent=True))
    exporter = OrdersExporter(ct_client, klaviyo_client, page_size=100, requests_per_batch=10)
    result = exporter.run_batch(after=None, ids=None, deadline=Deadline.after(60))

    assert (result.read, result.sent, result.done) == (1000, 1000, True)
    assert len(klaviyo.events) == 3000
    # Requests of whole orders (≤1,000 events) cut while reading goes on, the rest at the end.
    assert events_per_request(calls) == [999, 999, 999, 3]
    sends, reads = timeline.of("send"), timeline.of("read")
    # A page read started while a request was in flight: reading did not wait for sending.
    assert any(s < r_start < e for s, e in sends for r_start, _ in reads)
    # Two event requests in flight at once, never more than `in_flight`.
    assert timeline.most == 2


def test_one_request_in_flight_when_asked(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any, monkeypatch: Any,
) -> None:
    for i in range(700):
        ct.add("orders", order_doc(i))
    timeline = Timeline()
    monkeypatch.setattr(klaviyo_client, "create_event_bulk_job", timeline.wrap(
        "send", klaviyo_client.create_event_bulk_job, delay=0.1, concurrent=True))
    totals = run_all(OrdersExporter(ct_client, klaviyo_client, page_size=100, in_flight=1))
    assert totals.sent == 700 and len(klaviyo.events) == 2100
    assert timeline.most == 1


class CountingPacer(budget.SlotPacer):
    """A partition's slots, noting the thread that took each."""

    def __init__(self, share: budget.Share) -> None:
        super().__init__(share)
        self.threads: list[str] = []

    def acquire(self, *, deadline: Deadline = Deadline.never()) -> int:
        self.threads.append(threading.current_thread().name)
        return super().acquire(deadline=deadline)


def test_requests_in_flight_draw_on_the_partitions_budget_slots(
    ct: Any, ct_client: Any, klaviyo: Any,
) -> None:
    for i in range(1000):
        ct.add("orders", order_doc(i))
    share = budget.Share(family="event-bulk-create", slot_seconds=0.01, index=1, count=2)
    pacer = CountingPacer(share)
    # As default_exporters builds it: the partitions' slots over the process-wide limiter.
    limiter = cast(RateLimiter, budget.PacedLimiter(RateLimiter()))
    client = KlaviyoClient(klaviyo.api_key, klaviyo.url, DEFAULT_KLAVIYO_REVISION,
                           timeout=(1.0, 5.0), limiter=limiter)
    try:
        with budget.pacing(pacer):
            result = OrdersExporter(ct_client, client, page_size=100).run_batch(
                after=None, ids=None, deadline=Deadline.after(60))
    finally:
        client.close()
    assert result.sent == 1000
    # Every request attempt, made in the writer threads, took one of partition 1's slots.
    assert len(pacer.threads) >= len(posts(klaviyo, "/api/event-bulk-create-jobs")) >= 4
    assert all(name.startswith("bulk-send") for name in pacer.threads)
    assert pacer.last_slot is not None and pacer.last_slot % 2 == 1


def test_a_page_read_ahead_but_not_sent_is_the_next_batchs(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any, monkeypatch: Any,
) -> None:
    for i in range(700):
        ct.add("orders", order_doc(i))
    timeline = Timeline()
    calls: list[Any] = []
    monkeypatch.setattr(ct_client, "query_page", timeline.wrap("read", ct_client.query_page))
    monkeypatch.setattr(klaviyo_client, "create_event_bulk_job",
                        recording(calls, klaviyo_client.create_event_bulk_job))
    exporter = OrdersExporter(ct_client, klaviyo_client, page_size=100, requests_per_batch=1)
    totals = run_all(exporter)
    # The batches' cursors are where what they sent ends: every order counted once, and each of
    # its events sent once, although pages were read that a batch then left to the next one.
    assert [b.read for b in totals.batches] == [333, 367]
    assert (totals.read, totals.sent) == (700, 700)
    assert len(klaviyo.events) == 2100 and events_per_request(calls) == [999, 1000, 101]
    assert len(timeline.of("read")) >= 8


def test_a_failed_request_fails_the_batch_and_nothing_counts(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any, monkeypatch: Any,
) -> None:
    for i in range(1000):
        ct.add("orders", order_doc(i))
    real = klaviyo_client.create_event_bulk_job
    calls: list[int] = []

    def flaky(entries: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KlaviyoError("klaviyo down", status=503, retryable=True)
        return real(entries, **kwargs)

    monkeypatch.setattr(klaviyo_client, "create_event_bulk_job", flaky)
    exporter = OrdersExporter(ct_client, klaviyo_client, page_size=100)
    with pytest.raises(KlaviyoError):
        exporter.run_batch(after=None, ids=None, deadline=Deadline.after(60))
    # The runner delivers the batch again: the same events, idempotent; counted once then.
    monkeypatch.setattr(klaviyo_client, "create_event_bulk_job", real)
    result = exporter.run_batch(after=None, ids=None, deadline=Deadline.after(60))
    assert (result.read, result.sent, result.done) == (1000, 1000, True)


def test_customers_pages_read_ahead_never_read_past_a_full_request(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any,
) -> None:
    for i in range(1234):
        ct.add("customers", customer_doc(i))
    totals = run_all(CustomersExporter(ct_client, klaviyo_client, page_size=100,
                                       batch_size=250))
    assert totals.sent == 1234 and len(klaviyo.profiles) == 1234
    # Each page once (a retry after a timeout on a loaded machine asks the same again).
    pages = list(dict.fromkeys((tuple(r.query.get("where", [])), int(r.param("limit") or 0))
                               for r in ct.api_requests("customers")))
    # 100, 100, 50 per batch of 250: the read-ahead page is sized to what still fits.
    assert [limit for _, limit in pages] == [100, 100, 50] * 5


# ---- since -----------------------------------------------------------------------------------


def test_since_reads_only_what_changed(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any,
) -> None:
    for i in range(10):
        ct.add("customers", customer_doc(i, lastModifiedAt=f"2025-03-{i + 1:02d}T10:00:00.000Z"))
    since = datetime(2025, 3, 7, 10, 0, tzinfo=UTC)
    totals = run_all(CustomersExporter(ct_client, klaviyo_client, since=since))
    assert sorted(p["attributes"]["external_id"] for p in klaviyo.profiles.values()) == [
        "c00006", "c00007", "c00008", "c00009"]
    assert totals.read == 4
    wheres = ct.api_requests("customers")[0].query["where"]
    assert 'lastModifiedAt >= "2025-03-07T10:00:00.000Z"' in wheres
    # A partial sync by ids with `since` leaves out the unchanged ones too.
    klaviyo.profiles.clear()
    totals = run_all(CustomersExporter(ct_client, klaviyo_client, since=since),
                     ids=["c00001", "c00008"])
    assert totals.read == 1 and list(klaviyo.profiles.values())[0]["attributes"][
        "external_id"] == "c00008"


def test_since_predicate_is_utc_with_milliseconds() -> None:
    at = datetime(2025, 3, 7, 12, 30, 5, 123456, tzinfo=UTC) + timedelta()
    assert since_predicate(at) == 'lastModifiedAt >= "2025-03-07T12:30:05.123Z"'
    assert since_predicate(at.replace(tzinfo=None)) == since_predicate(at)


@pytest.mark.parametrize("kind", ["customers", "orders", "categories", "products"])
def test_build_exporter_passes_since(kind: Kind, ct_env: dict[str, str], ct_client: Any,
                                     klaviyo_client: Any) -> None:
    settings = load_settings(**{k.lower(): v for k, v in ct_env.items()},
                             klaviyo_api_key="pk_test")
    since = datetime(2025, 1, 1, tzinfo=UTC)
    since_exporter = build_exporter(kind, settings, ct_client, klaviyo_client, since=since)
    assert isinstance(since_exporter, KeysetExporter) and since_exporter.since == since
    full = build_exporter(kind, settings, ct_client, klaviyo_client)
    assert isinstance(full, KeysetExporter) and full.since is None


def test_products_since_keeps_the_published_filter(
    ct: Any, ct_client: Any, quick_jobs: Any, klaviyo_client: Any,
) -> None:
    for i, day in enumerate((1, 5, 9)):
        doc = product_doc(f"p{i}", [f"p{i}-v0"])
        doc["lastModifiedAt"] = f"2025-03-{day:02d}T00:00:00.000Z"
        ct.add("products", doc)
    exporter = ProductsExporter(ct_client, klaviyo_client, poll=FAST,
                                since=datetime(2025, 3, 4, tzinfo=UTC))
    totals = run_all(exporter)
    assert totals.sent == 2 and sorted(quick_jobs.items) == [
        "$custom:::$default:::p1", "$custom:::$default:::p2"]
    wheres = ct.api_requests("products")[0].query["where"]
    assert "masterData(published = true)" in wheres and any(
        w.startswith("lastModifiedAt >=") for w in wheres)


# ---- deleting --------------------------------------------------------------------------------


class SyncOnly:
    """An exporter without delete_batch (as the customers and orders exporters are)."""

    kind: Kind = "customers"

    def run_batch(self, *, after: str | None, ids: Any, deadline: Deadline,
                  through: str | None = None) -> BatchResult:
        return BatchResult(done=True)


def test_a_deleteall_for_an_exporter_that_cannot_delete_fails_the_job() -> None:
    assert not isinstance(SyncOnly(), DeletingExporter)
    runner = make_runner(MemoryStore(), {"customers": SyncOnly()})
    job = runner.start("customers", delete_all=True)  # the API never lets this one start
    assert drain(runner) == ["failed"]
    ended = runner.job(job.id)
    assert ended is not None and ended.status == JobStatus.FAILED
    assert ended.errorCode == "TypeError"
