"""The job store: transactional operations on jobs and locks, over a backend's `run(fn)`.

A backend (Firestore, or the embedded memory store) only provides atomic read-modify-write:
`run(fn)` calls `fn(txn)` where `txn` reads lock/job documents and buffers writes, and commits
them atomically (Firestore may call `fn` again on contention, so `fn` does nothing but read and
write through `txn`; reads come before writes). The operations below are the same for both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol, TypeVar

from shared.bulk.base import BatchResult, Kind
from shared.state import jobs
from shared.state.jobs import Conflict, Created, Job, JobStatus, Lock, Phase

T = TypeVar("T")


class Txn(Protocol):
    def lock(self, kind: Kind) -> Lock | None: ...

    def job(self, job_id: str) -> Job | None: ...

    def put_lock(self, lock: Lock) -> None: ...

    def put_job(self, job: Job) -> None: ...

    def put_ids(self, job_id: str, ids: list[str]) -> None: ...


def _release_lock(txn: Txn, lock: Lock | None, job_id: str) -> None:
    """Free the kind's lock if `job_id` (which just ended) holds it."""
    released = jobs.release(lock, job_id)
    if released is not None:
        txn.put_lock(released)


class _Renewal(NamedTuple):
    """The lease a write gives the job's lock (the worker that holds it, until now + lease)."""

    now: datetime
    lease: timedelta
    worker: str


class JobStore(ABC):
    """Jobs, their ids lists and the per-kind locks. Thread-safe."""

    # ---- backend primitives -----------------------------------------------------------------

    @abstractmethod
    def run(self, fn: Callable[[Txn], T]) -> T:
        """Run `fn` atomically (all its writes or none)."""

    @abstractmethod
    def get_job(self, job_id: str) -> Job | None: ...

    @abstractmethod
    def get_lock(self, kind: Kind) -> Lock | None: ...

    @abstractmethod
    def get_ids(self, job_id: str) -> list[str] | None:
        """The ids of a partial sync (None: the job syncs everything)."""

    def _compare_and_set(
        self, job_id: str, expect: Callable[[Job], bool], change: Callable[[Job], Job], *,
        renewal: _Renewal | None = None,
    ) -> Job | None:
        """In one transaction: read the job; unless `expect(job)` holds, write nothing and
        return None; else write `change(job)` (pure: Firestore may run it again) and return it.

        The kind's lock follows: released when the change ended a live job, renewed with
        `renewal` when the job lives on and holds it, else left alone (and not read).
        """

        def fn(txn: Txn) -> Job | None:
            job = txn.job(job_id)
            if job is None or not expect(job):
                return None
            changed = change(job)
            ends = job.live and not changed.live
            # Reads come before writes (Firestore's rule): the lock first, only when it changes.
            lock = txn.lock(job.kind) if ends or renewal is not None else None
            txn.put_job(changed)
            if ends:
                _release_lock(txn, lock, job_id)
            elif renewal is not None and lock is not None and lock.jobId == job_id and lock.held:
                txn.put_lock(jobs.renew(lock, now=renewal.now, lease=renewal.lease,
                                        holder=renewal.worker))
            return changed

        return self.run(fn)

    # ---- operations -------------------------------------------------------------------------

    def latest_job(self, kind: Kind) -> Job | None:
        lock = self.get_lock(kind)
        return self.get_job(lock.jobId) if lock is not None else None

    def create(
        self, kind: Kind, *, ids: Sequence[str] | None, delete_all: bool, now: datetime,
        lease: timedelta, started_by: str | None = None, partitions: int = 1,
    ) -> Created:
        """A new queued job holding the kind's lock; Conflict if a live job holds it.

        A lock whose lease lapsed belongs to a dead job: that job is marked failed ("lease
        expired") in the same transaction and the new job takes the lock over.
        """
        job = jobs.new_job(kind, ids=ids, delete_all=delete_all, now=now, lease=lease,
                           started_by=started_by)
        parts: list[Job] = []
        if partitions > 1:  # the job and its partitions are created together
            from shared.bulk.partitions import plan

            job = job.model_copy(update={"partitions": partitions})
            parts = plan(job, partitions)

        def fn(txn: Txn) -> Created:
            lock = txn.lock(kind)
            old = txn.job(lock.jobId) if lock is not None and lock.held else None
            new_lock = jobs.acquire(lock, job, now=now, lease=lease)  # raises Conflict
            dead = jobs.expire(old, now=now) if old is not None and old.live else None
            txn.put_job(job)
            for part in parts:
                txn.put_job(part)
            if ids is not None:
                txn.put_ids(job.id, list(ids))
            txn.put_lock(new_lock)
            if dead is not None:
                txn.put_job(dead)
            return Created(job=job, took_over=dead.id if dead is not None else None)

        return self.run(fn)

    def mark_published(self, job_id: str, seq: int) -> bool:
        """Record that the task for batch `seq` is queued (unless the job moved on meanwhile)."""
        return self._compare_and_set(
            job_id, lambda job: job.live and job.seq == seq and not job.nextTaskPublished,
            lambda job: job.model_copy(update={"nextTaskPublished": True}),
        ) is not None

    def set_total(self, job_id: str, total: int) -> Job | None:
        """Record how many records the job will read (once: a counted total is kept)."""
        return self._compare_and_set(job_id, lambda job: job.total is None,
                                     lambda job: job.model_copy(update={"total": total}))

    def mark_running(
        self, job_id: str, *, now: datetime, lease: timedelta, worker: str
    ) -> Job | None:
        """queued → running (startedAt), lease renewed. None unless the job was queued."""
        return self._compare_and_set(
            job_id, lambda job: job.status == JobStatus.QUEUED,
            lambda job: job.model_copy(update={
                "status": JobStatus.RUNNING, "startedAt": now, "updatedAt": now,
                "leaseExpiresAt": now + lease, "worker": worker,
            }),
            renewal=_Renewal(now, lease, worker),
        )

    def save_batch(
        self, job_id: str, *, seq: int, phase: Phase, cursor: str | None, result: BatchResult,
        now: datetime, lease: timedelta, worker: str, max_errors: int,
        last_slot: int | None = None,
    ) -> Job | None:
        """Add one batch's result if the job is still at (seq, phase, cursor); else None.

        Counts, errors, cursor and lease change together; a job that completes (or was asked to
        stop) ends here and releases the kind's lock.
        """

        def saved(job: Job) -> Job:
            applied = jobs.apply_batch(job, result, now=now, lease=lease, worker=worker,
                                       max_errors=max_errors)
            if last_slot is not None:  # a partition's Klaviyo budget slot (shared/bulk/budget.py)
                applied = applied.model_copy(update={"lastSlot": last_slot})
            return applied

        def at_batch(job: Job) -> bool:
            return job.live and (job.seq, job.phase, job.cursor) == (seq, phase, cursor)

        return self._compare_and_set(job_id, at_batch, saved,
                                     renewal=_Renewal(now, lease, worker))

    def record_failure(
        self, job_id: str, *, seq: int, now: datetime, lease: timedelta, worker: str,
        max_attempts: int, error_code: str,
    ) -> Job | None:
        """Count a failed attempt at batch `seq`; the job fails once `max_attempts` is reached.

        Returns the updated job (None if the job moved on or ended meanwhile).
        """

        def failed(job: Job) -> Job:
            attempts = job.attempts + 1
            if attempts >= max_attempts:
                return jobs.finish(
                    job.model_copy(update={"attempts": attempts}), JobStatus.FAILED, now=now,
                    reason=f"batch {seq} failed {attempts} times", error_code=error_code,
                )
            return job.model_copy(update={
                "attempts": attempts, "errorCode": error_code, "updatedAt": now,
                "leaseExpiresAt": now + lease, "worker": worker,
            })

        return self._compare_and_set(job_id, lambda job: job.live and job.seq == seq, failed,
                                     renewal=_Renewal(now, lease, worker))

    def finish(
        self, job_id: str, status: JobStatus, *, now: datetime, reason: str | None = None,
        error_code: str | None = None, only_if: frozenset[JobStatus] | None = None,
    ) -> Job | None:
        """End a live job (stopped/failed/completed) and release its lock; None if not live
        (or not in `only_if`)."""

        def fn(txn: Txn) -> Job | None:
            job = txn.job(job_id)
            if job is None:
                return None
            lock = txn.lock(job.kind)
            if not job.live or (only_if is not None and job.status not in only_if):
                return None
            ended = jobs.finish(job, status, now=now, reason=reason, error_code=error_code)
            txn.put_job(ended)
            _release_lock(txn, lock, job_id)
            return ended

        return self.run(fn)

    def request_stop(self, kind: Kind, *, now: datetime, by: str | None = None) -> Job | None:
        """The kind's live job → stopping (it stops at its next batch). A live job whose lease
        lapsed is stopped at once (its lock released): its tasks may still be running, and
        each of them then finds an ended job and does nothing more. A job that already ended
        (the last batch completed it just before) is returned as it is. None if the kind never
        had a job."""

        def fn(txn: Txn) -> Job | None:
            lock = txn.lock(kind)
            if lock is None:
                return None
            job = txn.job(lock.jobId)
            if job is None or not job.live:
                return job
            if not lock.active(now):
                stopped = jobs.finish(job, JobStatus.STOPPED, now=now,
                                      reason="stopped on request")
                stopped = stopped.model_copy(update={"stoppedBy": by})
                txn.put_job(stopped)
                _release_lock(txn, lock, job.id)
                return stopped
            if job.status == JobStatus.STOPPING:
                return job
            stopping = job.model_copy(update={"status": JobStatus.STOPPING, "updatedAt": now,
                                              "stoppedBy": by})
            txn.put_job(stopping)
            return stopping

        return self.run(fn)

    def force_release(self, kind: Kind, *, now: datetime, reason: str,
                      by: str | None = None) -> Job | None:
        """Operator override: release the kind's lock whatever its lease; a live job fails."""

        def fn(txn: Txn) -> Job | None:
            lock = txn.lock(kind)
            if lock is None or not lock.held:
                return None
            job = txn.job(lock.jobId)
            txn.put_lock(lock.model_copy(update={"held": False}))
            if job is not None and job.live:
                job = jobs.finish(job, JobStatus.FAILED, now=now, reason=reason)
                if by is not None:
                    job = job.model_copy(update={"stoppedBy": by})
                txn.put_job(job)
            return job

        return self.run(fn)


    # ---- partitioned jobs (shared/bulk/partitions.py) ------------------------------------------

    def get_parts(self, job: Job) -> list[Job | None]:
        """A partitioned job's partition documents, in order."""
        from shared.bulk.partitions import partition_id

        return [self.get_job(partition_id(job.id, i)) for i in range(job.partitions or 0)]

    def end_partitioned(self, job_id: str, *, now: datetime, max_errors: int) -> Job | None:
        """End a partitioned job once its partitions say so (shared.bulk.partitions.verdict): its
        counts become their sum and the kind's lock is released. None while it goes on (or when
        it had ended already). Called after a partition ends: the one that ends last always sees
        every other one ended (each partition's end is committed before it calls this)."""
        from shared.bulk import partitions

        def fn(txn: Txn) -> Job | None:
            job = txn.job(job_id)
            if job is None or not job.live or not job.partitions:
                return None
            lock = txn.lock(job.kind)
            parts = [txn.job(partitions.partition_id(job_id, i)) for i in range(job.partitions)]
            outcome = partitions.verdict(parts)
            if outcome is None:
                return None
            status, reason, code = outcome
            whole = partitions.aggregate(job, parts, max_errors=max_errors)
            ended = jobs.finish(whole.model_copy(update={"parts": None}), status, now=now,
                                reason=reason if reason is not None else job.reason,
                                error_code=code)
            txn.put_job(ended)
            _release_lock(txn, lock, job_id)
            return ended

        return self.run(fn)

    def renew_lease(self, job_id: str, *, now: datetime, lease: timedelta,
                    worker: str) -> Job | None:
        """A live job's lease (and its lock's) renewed from now; None if it is not live."""
        return self._compare_and_set(
            job_id, lambda job: job.live,
            lambda job: job.model_copy(update={"leaseExpiresAt": now + lease}),
            renewal=_Renewal(now, lease, worker),
        )


__all__ = ["Conflict", "Created", "JobStore", "Txn"]
