"""Partitioned bulk jobs: K id ranges, each its own chain of page tasks and job document, and the
job as a whole (status, counts, stop, failure, lease takeover, 409) as for one chain. The runner
over the embedded store with the list exporter, tasks run in shuffled order; then end to end
through functions-framework, the Pub/Sub and Firestore emulators and the fakes."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Unpack

import pytest

from shared.bulk import partitions
from shared.bulk.base import Kind
from shared.bulk.runner import Runner
from shared.bulk.tasks import LocalTaskQueue
from shared.errors import CommercetoolsError, KlaviyoError
from shared.state import Conflict, JobStatus, MemoryStore
from shared.state.jobs import LEASE_EXPIRED
from shared.state.store import JobStore
from tests.bulk_helpers import (
    Clock,
    ConfigOverrides,
    ListExporter,
    ListQueue,
    job_of,
    lock_of,
    make_runner,
    queue_of,
)
from tests.checks import known
from tests.fakes.commercetools import FakeCommercetools
from tests.fakes.klaviyo import FakeKlaviyo
from tests.test_bulk_e2e import Bulk, make_bulk  # noqa: F401 - the e2e harness fixture

rng = random.Random(16)
RECORDS = sorted(str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(200))


def shuffled_drain(runner: Runner, *, seed: int = 1, limit: int = 10_000) -> list[str]:
    """Run queued tasks in random order (partitions' chains interleave as on K instances)."""
    queue = runner.queue
    assert isinstance(queue, ListQueue)
    order = random.Random(seed)
    outcomes: list[str] = []
    while queue.tasks and limit:
        task = queue.tasks.pop(order.randrange(len(queue.tasks)))
        outcomes.append(runner.run_task(task))
        limit -= 1
    return outcomes


def partitioned(exporter: ListExporter, k: int = 4, store: JobStore | None = None,
                clock: Clock | None = None, **kw: Unpack[ConfigOverrides]) -> Runner:
    runner = make_runner(store or MemoryStore(), {exporter.kind: exporter}, clock=clock, **kw)
    runner.config = type(runner.config)(**{**runner.config.__dict__,
                                           "partitions": {exporter.kind: k}})
    return runner


# ---- the ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 8, 10, 64])
def test_ranges_cover_every_id_exactly_once(k: int) -> None:
    ranges = partitions.ranges(k)
    assert len(ranges) == k and ranges[0][0] is None and ranges[-1][1] is None
    samples = RECORDS + ["", "0", "2000", "2000-", "1fff", "ffff", "fffff", "g", "cust-1",
                         "\U0001f600"] + [b for r in ranges for b in r if b]
    for value in samples:
        owners = [i for i, (after, through) in enumerate(ranges)
                  if (after is None or value > after) and (through is None or value <= through)]
        assert len(owners) == 1, (value, owners)


def test_uuid_ids_spread_evenly() -> None:
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(80_000)]
    ranges = partitions.ranges(8)
    sizes = [sum(1 for v in ids if (a is None or v > a) and (t is None or v <= t))
             for a, t in ranges]
    assert sum(sizes) == len(ids)
    assert max(sizes) / min(sizes) < 1.1, sizes


def test_partition_ids() -> None:
    assert partitions.is_partition_id(partitions.partition_id("abc", 7))
    assert not partitions.is_partition_id("abc") and not partitions.is_partition_id("-p1")


# ---- the runner, embedded store --------------------------------------------------------------


def test_every_record_once_and_the_job_adds_its_partitions_up() -> None:
    exporter = ListExporter("customers", RECORDS, page=7, bad={RECORDS[5], RECORDS[150]})
    runner = partitioned(exporter, 4)
    job = runner.start("customers")
    assert job.partitions == 4 and len(queue_of(runner).tasks) == 4
    assert {t.jobId for t in queue_of(runner).tasks} == {
        partitions.partition_id(job.id, i) for i in range(4)}
    outcomes = shuffled_drain(runner)
    assert set(outcomes) == {"saved"}
    assert sorted(exporter.sent) == sorted(set(RECORDS) - {RECORDS[5], RECORDS[150]})
    assert len(exporter.sent) == len(set(exporter.sent))
    whole = job_of(runner, job.id)
    assert whole.status == JobStatus.COMPLETED and whole.finishedAt is not None
    assert whole.counts.read == 200 and whole.counts.sent == 198 and whole.counts.failed == 2
    assert sorted(e.ctId for e in whole.errors) == sorted([RECORDS[5], RECORDS[150]])
    assert whole.seq == len(outcomes) and whole.parts is not None
    assert [p["status"] for p in whole.parts] == ["completed"] * 4
    assert sum(p["read"] for p in whole.parts) == 200
    stored = known(runner.store.get_job(job.id))  # the job document holds the sums at the end
    assert stored.counts == whole.counts and stored.status == JobStatus.COMPLETED
    assert not lock_of(runner.store, "customers").held
    assert known(runner.latest("customers")).id == job.id


def test_partial_sync_and_catalog_kinds_stay_one_chain() -> None:
    exporter = ListExporter("customers", RECORDS, page=50)
    runner = partitioned(exporter, 4)
    job = runner.start("customers", ids=RECORDS[:20])
    assert job.partitions is None and len(queue_of(runner).tasks) == 1
    shuffled_drain(runner)
    assert job_of(runner, job.id).counts.sent == 20
    products = ListExporter("products", RECORDS, page=50)
    runner = make_runner(MemoryStore(), {"products": products})
    runner.config = type(runner.config)(**{**runner.config.__dict__,
                                           "partitions": {"products": 4}})
    assert runner.start("products").partitions is None


def test_conflict_while_any_partition_runs() -> None:
    exporter = ListExporter("customers", RECORDS, page=7)
    runner = partitioned(exporter, 4)
    job = runner.start("customers")
    shuffled_drain(runner, limit=5)
    with pytest.raises(Conflict) as caught:
        runner.start("customers")
    assert caught.value.job_id == job.id
    assert job_of(runner, job.id).status == JobStatus.RUNNING


def test_redelivered_and_killed_tasks_count_once(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = ListExporter("customers", RECORDS, page=9)
    runner = partitioned(exporter, 4)
    job = runner.start("customers")
    queue = runner.queue
    assert isinstance(queue, ListQueue)
    order = random.Random(3)
    real_save = runner.store.save_batch
    kills = 0
    while queue.tasks:
        task = queue.tasks.pop(order.randrange(len(queue.tasks)))
        if order.random() < 0.3:  # killed after sending, before saving: redelivered
            kills += 1
            monkeypatch.setattr(runner.store, "save_batch",
                                lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed")))
            with pytest.raises(SystemExit):
                runner.run_task(task)
            monkeypatch.setattr(runner.store, "save_batch", real_save)
        runner.run_task(task)
        if order.random() < 0.3:
            assert runner.run_task(task) in ("duplicate", "ended")  # delivered twice
    assert kills > 3
    whole = job_of(runner, job.id)
    assert whole.status == JobStatus.COMPLETED
    assert whole.counts.read == whole.counts.sent == 200
    assert sorted(set(exporter.sent)) == RECORDS  # everything, resent batches included


def test_stop_reaches_every_partition() -> None:
    exporter = ListExporter("customers", RECORDS, page=5)
    runner = partitioned(exporter, 4)
    job = runner.start("customers")
    shuffled_drain(runner, limit=6)
    stopping = runner.stop("customers")
    assert stopping is not None and stopping.status == JobStatus.STOPPING
    sent_before = len(exporter.sent)
    outcomes = shuffled_drain(runner)
    assert outcomes.count("stopped") == 4 and len(exporter.sent) == sent_before
    whole = job_of(runner, job.id)
    assert whole.status == JobStatus.STOPPED and whole.counts.sent == sent_before
    assert whole.parts is not None and {p["status"] for p in whole.parts} == {"stopped"}
    assert not lock_of(runner.store, "customers").held
    assert runner.start("customers").id != job.id  # the kind is free again


def test_one_failed_partition_fails_the_job_and_ends_the_others() -> None:
    fatal = KlaviyoError("bad", status=400, code="invalid")
    exporter = ListExporter("customers", RECORDS, page=5)
    after = partitions.ranges(4)[2][0]
    exporter.fail[after] = [fatal]  # the first batch of partition 2 fails for good
    runner = partitioned(exporter, 4)
    job = runner.start("customers")
    outcomes = shuffled_drain(runner)
    assert "failed" in outcomes
    whole = job_of(runner, job.id)
    assert whole.status == JobStatus.FAILED and known(whole.reason).startswith("partition 2:")
    assert not lock_of(runner.store, "customers").held
    assert all(p is not None and not p.live for p in runner.store.get_parts(whole))
    assert whole.counts.read < 200


def test_retries_of_a_partition_then_success() -> None:
    exporter = ListExporter("customers", RECORDS, page=50)
    after = partitions.ranges(4)[1][0]
    exporter.fail[after] = [CommercetoolsError("down", status=503)] * 2
    runner = partitioned(exporter, 4)
    job = runner.start("customers")
    queue = runner.queue
    assert isinstance(queue, ListQueue)
    while queue.tasks:
        task = queue.pop()
        try:
            runner.run_task(task)
        except CommercetoolsError:
            queue.tasks.append(task)  # Pub/Sub redelivers
            view = job_of(runner, job.id)
            assert view.errorCode == "http_503" and view.attempts >= 1  # shown on the job
    whole = job_of(runner, job.id)
    assert whole.status == JobStatus.COMPLETED and whole.counts.sent == 200


def test_lease_renewed_by_partitions_and_taken_over_when_they_die() -> None:
    clock = Clock()
    exporter = ListExporter("customers", RECORDS, page=3)
    runner = partitioned(exporter, 4, clock=clock)  # lease 60 s
    job = runner.start("customers")
    first_lease = known(runner.store.get_job(job.id)).leaseExpiresAt
    assert first_lease is not None
    for _ in range(8):  # batches keep coming: the job's lease never lapses
        clock.advance(20)
        shuffled_drain(runner, limit=1)
    renewed = known(runner.store.get_job(job.id)).leaseExpiresAt
    assert renewed is not None and renewed > first_lease
    assert lock_of(runner.store, "customers").expiresAt > clock.now
    with pytest.raises(Conflict):
        runner.start("customers")
    clock.advance(61)  # every worker died: nothing renews the lease
    new = runner.start("customers")
    dead = job_of(runner, job.id)
    assert dead.status == JobStatus.FAILED and dead.reason == LEASE_EXPIRED
    stale = [t for t in queue_of(runner).tasks if t.jobId.startswith(job.id)]
    assert stale and all(runner.run_task(t) == "ended" for t in stale)
    assert all(p is not None and not p.live for p in runner.store.get_parts(dead))
    queue_of(runner).tasks = [t for t in queue_of(runner).tasks if t.jobId.startswith(new.id)]
    shuffled_drain(runner)
    assert job_of(runner, new.id).status == JobStatus.COMPLETED


def test_total_counted_once_for_the_whole_job() -> None:
    exporter = ListExporter("customers", RECORDS, page=40)
    counted: list[Kind] = []
    runner = partitioned(exporter, 4)

    def count(kind: Kind) -> int:
        counted.append(kind)
        return len(RECORDS)

    runner.counter = count
    job = runner.start("customers")
    shuffled_drain(runner)
    whole = job_of(runner, job.id)
    assert counted == ["customers"] and whole.total == 200 and whole.counts.read == 200


# ---- end to end: functions-framework, Pub/Sub and Firestore emulators, the fakes ---------------


@pytest.mark.emulator
def test_partitioned_customers_sync_through_pubsub(make_bulk: Callable[..., Bulk],
                                                   ct: FakeCommercetools,
                                                   klaviyo: FakeKlaviyo) -> None:
    ids = sorted(str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(12))
    for i, ct_id in enumerate(ids):
        ct.add("customers", {"id": ct_id, "email": f"p{i}@example.com", "addresses": []})
    bulk = make_bulk(BULK_PARTITIONS_CUSTOMERS="4", BULK_PAGE_SIZE="2",
                     BULK_KLAVIYO_SHARE="1")
    status, body = bulk.post("/sync/customers")
    assert status == 202
    job = bulk.pump(body["jobId"], max_tasks=80, timeout=90)
    assert job.status == JobStatus.COMPLETED, job
    assert job.partitions == 4 and job.counts.read == job.counts.sent == 12
    assert sorted(p["attributes"]["external_id"] for p in klaviyo.profiles.values()) == ids
    status, view = bulk.get("/sync/customers")
    assert status == 200 and view["status"] == "completed" and view["counts"]["sent"] == 12
    assert [p["status"] for p in view["parts"]] == ["completed"] * 4
    assert view["progress"]["read"] == 12 and view["progress"]["total"] == 12
    # Every partition read only its own range: no commercetools page crossed a cut.
    for part in bulk.store.get_parts(job):
        assert part is not None and part.status == JobStatus.COMPLETED


def test_local_mode_runs_one_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """One in-process worker thread: partitions would only take turns on it."""
    from shared.bulk.runner import build_runner
    from shared.config import load_settings

    monkeypatch.delenv("K_SERVICE", raising=False)
    settings = load_settings(
        ctp_project_key="p", ctp_client_id="c", ctp_client_secret="s",
        ctp_api_url="http://127.0.0.1:1", ctp_auth_url="http://127.0.0.1:1",
        klaviyo_api_key="k", google_cloud_project=None, firestore_emulator_host=None,
        pubsub_emulator_host=None, bulk_local_state_file="", bulk_backend="local")
    assert settings.bulk_partitions_customers == 8
    runner = build_runner(settings, exporters=lambda kind: ListExporter(kind, RECORDS))
    job = runner.start("customers")
    assert job.partitions is None
    assert isinstance(runner.queue, LocalTaskQueue) and runner.queue.wait_idle(10)
    assert job_of(runner, job.id).status == JobStatus.COMPLETED
