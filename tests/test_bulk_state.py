"""Job store: lock, lease, cursor checks and caps — the same rules on the embedded store (memory
and file) and on the real Firestore emulator."""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypedDict, Unpack

import pytest

from shared.bulk.base import BatchResult, Kind
from shared.klaviyo.batches import RecordError
from shared.state import Conflict, Job, JobStatus, JobStore, MemoryStore
from shared.state.jobs import LEASE_EXPIRED, Phase
from shared.state.store import Txn
from tests.bulk_helpers import Clock, lock_of
from tests.checks import known

LEASE = timedelta(seconds=60)


@pytest.fixture(params=["memory", "file", pytest.param("firestore", marks=pytest.mark.emulator)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    if request.param == "memory":
        return MemoryStore()
    if request.param == "file":
        return MemoryStore(tmp_path / "state" / "bulk.json")
    from shared.state.firestore_store import FirestoreStore

    db = request.getfixturevalue("firestore_db")
    return FirestoreStore(db, prefix=f"t{uuid.uuid4().hex[:6]}_")


def create(store: JobStore, clock: Clock, kind: Kind = "customers", *,
           ids: Sequence[str] | None = None, delete_all: bool = False) -> Job:
    return store.create(kind, ids=ids, delete_all=delete_all, now=clock(), lease=LEASE).job


class Position(TypedDict, total=False):
    """Where save_batch expects the job to be; a test overrides part of it."""

    seq: int
    phase: Phase
    cursor: str | None


def save(store: JobStore, job: Job, clock: Clock, result: BatchResult,
         **kw: Unpack[Position]) -> Job | None:
    position: Position = {"seq": job.seq, "phase": job.phase, "cursor": job.cursor, **kw}
    return store.save_batch(job.id, result=result, now=clock(), lease=LEASE, worker="w",
                            max_errors=3, **position)


def test_one_live_job_per_kind(store: JobStore) -> None:
    clock = Clock()
    job = create(store, clock)
    assert job.status == JobStatus.QUEUED and lock_of(store, "customers").jobId == job.id
    with pytest.raises(Conflict) as conflict:
        create(store, clock)
    assert conflict.value.job_id == job.id
    other = create(store, clock, "orders")  # other kinds are independent
    assert other.id != job.id
    clock.advance(59)
    with pytest.raises(Conflict):
        create(store, clock)


def test_expired_lease_is_taken_over_and_the_dead_job_failed(store: JobStore) -> None:
    clock = Clock()
    dead = create(store, clock)
    clock.advance(61)
    created = store.create("customers", ids=None, delete_all=False, now=clock(), lease=LEASE)
    assert created.took_over == dead.id
    old = store.get_job(dead.id)
    assert old is not None and old.status == JobStatus.FAILED and old.reason == LEASE_EXPIRED
    assert lock_of(store, "customers").jobId == created.job.id
    assert known(store.latest_job("customers")).id == created.job.id
    # the dead job's late batch is not saved into anything
    assert save(store, dead, clock, BatchResult(read=1, sent=1, cursor="a")) is None


def test_saved_batch_renews_the_lease(store: JobStore) -> None:
    clock = Clock()
    job = create(store, clock)
    clock.advance(50)
    saved = save(store, job, clock, BatchResult(read=2, sent=2, cursor="b"))
    assert saved is not None and saved.leaseExpiresAt == clock() + LEASE
    clock.advance(50)  # 100 s after the start, 50 s after the renewal
    with pytest.raises(Conflict):
        create(store, clock)
    assert lock_of(store, "customers").expiresAt == clock() + timedelta(seconds=10)


def test_batch_is_saved_once_and_only_at_its_position(store: JobStore) -> None:
    clock = Clock()
    job = create(store, clock)
    first = save(store, job, clock, BatchResult(read=3, sent=2, skipped=1, cursor="c"))
    assert first is not None
    assert (first.seq, first.cursor, first.status) == (1, "c", JobStatus.RUNNING)
    # the same task again (redelivery): nothing added
    assert save(store, job, clock, BatchResult(read=3, sent=2, skipped=1, cursor="c")) is None
    # a task whose cursor does not match the job's
    assert save(store, first, clock, BatchResult(read=1, cursor="d"), cursor="x") is None
    done = save(store, first, clock, BatchResult(read=1, sent=1, cursor="d", done=True))
    assert done is not None and done.status == JobStatus.COMPLETED and done.finishedAt
    assert done.counts.model_dump() == {"read": 4, "sent": 3, "skipped": 1, "failed": 0,
                                        "deleted": 0}
    lock = lock_of(store, "customers")
    assert lock.jobId == job.id and not lock.held  # released, still names the latest job
    assert known(store.latest_job("customers")).status == JobStatus.COMPLETED
    assert create(store, clock).id != job.id


def test_errors_are_capped_and_counted(store: JobStore) -> None:
    clock = Clock()
    job = create(store, clock)
    errors = [RecordError(ct_id=f"id-{i}", status=400, code="invalid", pointer="/p")
              for i in range(2)]
    job = known(save(store, job, clock, BatchResult(read=2, failed=2, errors=errors, cursor="b")))
    errors = [RecordError(ct_id=f"id-{i}", status=409, code="duplicate") for i in range(2, 5)]
    job = known(save(store, job, clock, BatchResult(read=3, failed=3, errors=errors, cursor="e")))
    assert [e.ctId for e in job.errors] == ["id-0", "id-1", "id-2"]  # max_errors=3
    assert job.errorCount == 5 and job.counts.failed == 5
    assert job.errors[0].model_dump() == {"ctId": "id-0", "status": 400, "code": "invalid",
                                          "pointer": "/p"}


def test_stop_request(store: JobStore) -> None:
    clock = Clock()
    assert store.request_stop("customers", now=clock()) is None  # nothing runs
    job = create(store, clock)
    stopping = store.request_stop("customers", now=clock())
    assert stopping is not None and stopping.status == JobStatus.STOPPING
    assert known(store.request_stop("customers", now=clock())).status == JobStatus.STOPPING
    # the batch in flight is still saved, then the job stops and frees the kind
    stopped = save(store, job, clock, BatchResult(read=1, sent=1, cursor="a"))
    assert stopped is not None and stopped.status == JobStatus.STOPPED
    assert stopped.counts.sent == 1 and stopped.cursor == "a"
    # a stop after the job ended reports how it ended, and changes nothing
    assert known(store.request_stop("customers", now=clock())).status == JobStatus.STOPPED
    create(store, clock)


def test_failed_attempts_end_the_job(store: JobStore) -> None:
    clock = Clock()
    job = create(store, clock)
    fail = functools.partial(store.record_failure, job.id, now=clock(), lease=LEASE, worker="w",
                             max_attempts=3, error_code="http_503")
    assert known(fail(seq=0)).attempts == 1
    assert fail(seq=5) is None
    second = fail(seq=0)
    assert second is not None and second.attempts == 2 and second.status == JobStatus.QUEUED
    ended = fail(seq=0)
    assert ended is not None and ended.status == JobStatus.FAILED
    assert ended.errorCode == "http_503" and ended.reason == "batch 0 failed 3 times"
    assert not lock_of(store, "customers").held


def test_force_release(store: JobStore) -> None:
    clock = Clock()
    assert store.force_release("customers", now=clock(), reason="x") is None
    job = create(store, clock)
    released = store.force_release("customers", now=clock(), reason="released by operator")
    assert released is not None and released.id == job.id and released.status == JobStatus.FAILED
    assert not lock_of(store, "customers").held
    create(store, clock)


def test_partial_ids_are_kept_apart_from_the_job(store: JobStore) -> None:
    clock = Clock()
    job = create(store, clock, ids=["b", "a"])
    assert job.idCount == 2 and store.get_ids(job.id) == ["b", "a"]
    assert "ids" not in known(store.get_job(job.id)).public()
    assert store.get_ids(create(store, clock, "orders").id) is None


def test_delete_phase_then_sync_phase(store: JobStore) -> None:
    clock = Clock()
    job = create(store, clock, "categories", delete_all=True)
    assert job.phase == "deleting"
    job = known(save(store, job, clock, BatchResult(sent=100)))
    assert (job.phase, job.counts.deleted, job.counts.sent) == ("deleting", 100, 0)
    job = known(save(store, job, clock, BatchResult(sent=5, done=True)))
    assert (job.phase, job.cursor, job.live) == ("syncing", None, True)
    job = known(save(store, job, clock, BatchResult(read=7, sent=7, cursor="z", done=True)))
    assert job.status == JobStatus.COMPLETED
    assert job.counts.model_dump() == {"read": 7, "sent": 7, "skipped": 0, "failed": 0,
                                       "deleted": 105}


def test_concurrent_creates_one_winner(store: JobStore) -> None:
    clock = Clock()
    results: list[object] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            results.append(create(store, clock).id)
        except Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [r for r in results if isinstance(r, str)]
    assert len(results) == 8 and len(winners) == 1
    assert all(r.job_id == winners[0] for r in results if isinstance(r, Conflict))


def test_file_store_is_shared_between_instances(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "bulk.json"
    job = create(MemoryStore(path), clock)
    other = MemoryStore(path)  # e.g. `python -m bulk status` in another process
    assert known(other.latest_job("customers")).id == job.id
    assert known(other.request_stop("customers", now=clock())).status == JobStatus.STOPPING
    assert known(MemoryStore(path).get_job(job.id)).status == JobStatus.STOPPING


@pytest.mark.emulator
def test_firestore_write_is_conditional_on_what_was_read(firestore_db: Any) -> None:
    """A change committed between a state change's reads and its write makes it run again."""
    from shared.state.firestore_store import FirestoreStore

    clock = Clock()
    store = FirestoreStore(firestore_db, prefix="cas_")
    job = create(store, clock)
    seen: list[int] = []

    def bump_counts(txn: Txn) -> None:
        current = known(txn.job(job.id))
        seen.append(current.counts.read)
        if len(seen) == 1:  # another instance saves a batch in between
            store.run(lambda t: t.put_job(known(t.job(job.id)).model_copy(
                update={"counts": current.counts.model_copy(update={"read": 10})})))
        txn.put_job(current.model_copy(
            update={"counts": current.counts.model_copy(update={"read": current.counts.read + 1})}))

    store.run(bump_counts)
    assert seen == [0, 10] and known(store.get_job(job.id)).counts.read == 11
