"""Bulk keeps going through transient faults and tells the truth at the end (issue 14 §5):
transient Firestore/Pub/Sub errors in a page task are retried, a stop reaches a job whose lease
lapsed and reports a job that already completed, a partial sync reports the ids commercetools did
not have."""

from __future__ import annotations

from typing import Any, cast

import pytest
from google.api_core import exceptions as gexc

from shared.bulk.api import BulkApi
from shared.bulk.exporters.customers import CustomersExporter
from shared.bulk.exporters.orders import OrdersExporter
from shared.bulk.exporters.products import ProductsExporter
from shared.bulk.runner import Runner, TransientFailure, error_code, is_transient
from shared.state.firestore_store import ContentionError
from shared.state.jobs import JobStatus
from shared.state.memory_store import MemoryStore
from shared.state.store import JobStore
from tests.bulk_helpers import Clock, ListExporter, drain, job_of, make_runner, queue_of
from tests.test_bulk_exporters import customer_doc, order_doc, product_doc, run_all

RECORDS = [f"c{i:02d}" for i in range(10)]


@pytest.fixture
def exporter() -> ListExporter:
    return ListExporter("customers", RECORDS, page=3)


@pytest.fixture
def runner(exporter: ListExporter) -> Runner:
    return make_runner(MemoryStore(), {"customers": exporter})


class FlakyIds:
    """The runner's real store, whose `get_ids` fails `times` times the way Firestore does.
    Duck-typed (everything else is forwarded), so the tests cast it to the JobStore it stands
    for."""

    def __init__(self, store: Any, error: Exception, times: int) -> None:
        self._store, self._error, self.times = store, error, times

    def get_ids(self, job_id: str) -> Any:
        if self.times:
            self.times -= 1
            raise self._error
        return self._store.get_ids(job_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.mark.parametrize("error", [
    gexc.ServiceUnavailable("firestore unavailable"),
    gexc.DeadlineExceeded("firestore deadline"),
    gexc.InternalServerError("internal"),
    gexc.Aborted("contention"),
    gexc.TooManyRequests("quota"),
    ConnectionResetError("reset"),
    TimeoutError("timed out"),
])
def test_transient_store_error_in_a_page_task_is_retried(
    runner: Runner, exporter: ListExporter, error: Exception,
) -> None:
    job = runner.start("customers", ids=["c01", "c03"])
    runner.store = cast(JobStore, FlakyIds(runner.store, error, times=2))
    task = queue_of(runner).pop()
    for attempt in (1, 2):
        with pytest.raises(TransientFailure):
            runner.run_task(task)  # raised: the task is delivered again
        waiting = job_of(runner, job.id)
        assert waiting.status == JobStatus.RUNNING and waiting.attempts == attempt
        assert waiting.errorCode == type(error).__name__
    assert runner.run_task(task) == "saved"
    drain(runner)
    done = job_of(runner, job.id)
    assert done.status == JobStatus.COMPLETED and exporter.sent == ["c01", "c03"]


def test_a_bug_still_fails_the_job(runner: Runner, exporter: ListExporter) -> None:
    job = runner.start("customers", ids=["c01"])
    runner.store = cast(JobStore, FlakyIds(runner.store, KeyError("bug"), times=1))
    assert drain(runner) == ["failed"]
    assert job_of(runner, job.id).errorCode == "KeyError"


@pytest.mark.parametrize("error, transient", [
    (gexc.ServiceUnavailable("x"), True), (gexc.BadGateway("x"), True),
    (gexc.GatewayTimeout("x"), True), (gexc.ResourceExhausted("x"), True),
    (gexc.Unknown("x"), True), (gexc.RetryError("x", None), True),
    (gexc.PermissionDenied("x"), False), (gexc.InvalidArgument("x"), False),
    (gexc.NotFound("x"), False), (ValueError("x"), False), (KeyError("x"), False),
    (ConnectionRefusedError("x"), True), (TimeoutError("x"), True),
    (ContentionError("lost to concurrent changes"), True),
])
def test_transient_classification(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient
    if transient:
        assert error_code(TransientFailure(error)) == type(error).__name__
        assert TransientFailure(error).retryable


# ---- stop -----------------------------------------------------------------------------------

def test_stop_reaches_a_job_whose_lease_lapsed_while_its_tasks_run(
    runner: Runner, exporter: ListExporter,
) -> None:
    job = runner.start("customers")
    drain(runner, limit=1)  # one batch saved; the next task is queued
    assert isinstance(runner.clock, Clock)  # make_runner's
    runner.clock.advance(runner.config.lease.total_seconds() + 1)
    stopped = runner.stop("customers")
    assert stopped is not None and stopped.status == JobStatus.STOPPED
    lock = runner.store.get_lock("customers")
    assert lock is not None and not lock.held
    # the task still on the queue finds an ended job and does nothing more
    assert drain(runner) == ["ended"]
    assert job_of(runner, job.id).status == JobStatus.STOPPED
    assert exporter.sent == exporter.records[:3]
    runner.start("customers")  # the kind is free


def test_stop_after_the_last_batch_reports_completed(
    runner: Runner, exporter: ListExporter,
) -> None:
    job = runner.start("customers")
    drain(runner)
    api = BulkApi(runner, clock=runner.clock)
    answer = api.handle("POST", "/sync/customers/stop")
    assert answer.status == 200
    assert answer.body["status"] == "completed" and answer.body["jobId"] == job.id
    assert job_of(runner, job.id).status == JobStatus.COMPLETED
    assert api.handle("POST", "/sync/orders/stop").status == 404  # never ran


# ---- partial sync: notFound -------------------------------------------------------------------

def test_partial_sync_reports_ids_commercetools_does_not_have(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any,
) -> None:
    for i in range(6):
        ct.add("customers", customer_doc(i))
    ids = ["c00001", "gone-1", "c00004", "a-missing", "zz-missing", "c00004"]
    totals = run_all(CustomersExporter(ct_client, klaviyo_client, batch_size=2), ids=ids)
    assert (totals.read, totals.sent) == (2, 2)
    assert sorted(i for b in totals.batches for i in b.not_found) == [
        "a-missing", "gone-1", "zz-missing"]


def test_partial_orders_and_products_report_not_found(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any,
) -> None:
    klaviyo.job_status_sequence = []  # catalog jobs complete at their first poll
    ct.add("orders", order_doc(1, lines=1))
    totals = run_all(OrdersExporter(ct_client, klaviyo_client), ids=["o00001", "o-nope"])
    assert [i for b in totals.batches for i in b.not_found] == ["o-nope"]
    ct.add("products", product_doc("p1", ["SKU-1"]))
    unpublished = product_doc("p2", ["SKU-2"])
    unpublished["masterData"]["published"] = False
    ct.add("products", unpublished)
    totals = run_all(ProductsExporter(ct_client, klaviyo_client),
                     ids=["p1", "p2", "p-nope"])
    # an unpublished product exists: passed over, not "not found"
    assert [i for b in totals.batches for i in b.not_found] == ["p-nope"]


def test_job_counts_not_found_and_keeps_the_first_ids(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any,
) -> None:
    ct.add("customers", customer_doc(1))
    runner = make_runner(MemoryStore(), {"customers": CustomersExporter(
        ct_client, klaviyo_client, page_size=7, batch_size=7)}, max_errors=5)
    ids = ["c00001"] + [f"x{i:02d}" for i in range(30)]
    job = runner.start("customers", ids=ids)
    drain(runner)
    done = job_of(runner, job.id)
    assert done.status == JobStatus.COMPLETED and done.notFound == 30
    assert done.notFoundIds == [f"x{i:02d}" for i in range(5)]
    view = done.public()
    assert view["notFound"] == 30 and view["notFoundIds"][0] == "x00"
