"""Bulk job state: the Job document, the per-kind lock with its lease, and the pure transitions.

Every change of state is a function of (lock, job, now) that the stores run inside one
transaction (Firestore) or under one lock (the embedded store), so both backends share the rules:

- a kind has at most one *live* job (queued, running, stopping): the lock document of the kind
  points at it and carries a lease (`expiresAt`) that every saved batch renews;
- a lock whose lease has lapsed belongs to a dead job: the next start marks that job failed
  ("lease expired") and takes the lock over;
- a batch result is saved only if the job is still at the cursor (and batch number) the task
  started from, so a redelivered or duplicated task never counts twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from shared.bulk.base import BatchResult, Kind
from shared.klaviyo.batches import RecordError

# `verifying`: every record was sent; the job waits for Klaviyo to finish the bulk jobs it started
# (shared/bulk/verification.py) before it says `completed`.
Phase = Literal["deleting", "syncing", "verifying"]


class JobStatus(str, Enum):  # noqa: UP042 -- StrEnum would change str(status)
    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def live(self) -> bool:
        return self in LIVE_STATUSES


LIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.STOPPING})

LEASE_EXPIRED = "lease expired"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Counts(_Model):
    read: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    deleted: int = 0  # Klaviyo objects removed in the deleteAll phase


class JobError(_Model):
    """One refused record: CT id and Klaviyo status/code/pointer only (never the record)."""

    ctId: str
    status: int | None = None
    code: str | None = None
    pointer: str | None = None
    # Set when Klaviyo accepted the record into a bulk job and the job refused it (import errors,
    # a catalog job's errors): the Klaviyo job to look it up in.
    klaviyoJobId: str | None = None

    @model_serializer(mode="wrap")
    def _without_empty_job(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Most errors are the request's, not a job's: no `klaviyoJobId: null` on each of them.
        data: dict[str, Any] = handler(self)
        if data.get("klaviyoJobId") is None:
            data.pop("klaviyoJobId", None)
        return data

    @classmethod
    def of(cls, error: RecordError) -> JobError:
        return cls(ctId=error.ct_id, status=error.status, code=error.code, pointer=error.pointer,
                   klaviyoJobId=error.klaviyo_job)


class KlaviyoJobRef(_Model):
    """A Klaviyo bulk job a batch started and nobody has checked yet (its id and how many
    records went into it): stored on the job (or partition) document until checked."""

    id: str
    records: int = 0


class Verified(_Model):
    """What one task learnt about its document's Klaviyo jobs (shared/bulk/verification.py):
    the jobs it started, the ones it found finished, and the records those refused. Saved in the
    same conditional write as the task's batch, so a redelivered task checks again, never twice."""

    started: list[KlaviyoJobRef] = Field(default_factory=list)
    checked: list[str] = Field(default_factory=list)  # ids of Klaviyo jobs found finished
    failed: int = 0  # records those jobs refused
    errors: list[JobError] = Field(default_factory=list)  # the first of them, with CT ids
    held: bool = False  # the batch was held back (too many unchecked jobs): nothing was sent

    def pending_after(self, pending: Sequence[KlaviyoJobRef]) -> list[KlaviyoJobRef]:
        done = set(self.checked)
        return [r for r in (*pending, *self.started) if r.id not in done]


class Job(_Model):
    id: str
    kind: Kind
    status: JobStatus = JobStatus.QUEUED
    phase: Phase = "syncing"
    deleteAll: bool = False
    idCount: int | None = None  # partial sync: how many ids (the ids live in their own document)
    # Records the syncing phase will read, counted once at the job's start (commercetools
    # `withTotal`; the ids' count for a partial sync). None: not counted (yet, or it failed).
    total: int | None = None
    cursor: str | None = None  # last CT id done in the syncing phase
    seq: int = 0  # batches saved so far; the task for the next batch carries this number
    nextTaskPublished: bool = False  # the task for batch `seq` is on the queue
    counts: Counts = Field(default_factory=Counts)
    errors: list[JobError] = Field(default_factory=list)  # the first N record errors
    errorCount: int = 0  # all record errors, including those beyond the first N
    notFound: int = 0  # partial sync: ids commercetools did not have
    notFoundIds: list[str] = Field(default_factory=list)  # the first N of them
    attempts: int = 0  # failed attempts at the current batch
    reason: str | None = None  # why the job failed or stopped
    errorCode: str | None = None  # Klaviyo/CT error code (or exception type) that failed it
    worker: str | None = None  # instance that last ran a batch
    # Who asked (the API's authenticated caller, "cli" or "local"): an operator's identity.
    startedBy: str | None = None
    stoppedBy: str | None = None  # who asked it to stop, or released its lock
    leaseExpiresAt: datetime | None = None
    # Partitions (shared/bulk/partitions.py). On a partitioned job: how many; its partitions are
    # documents of their own (`<jobId>-p<i>`), each a chain of page tasks over one id range.
    partitions: int | None = None
    # On a partition: its job, its number, and the last id of its range (inclusive; None: no
    # end). Its range starts after the `cursor` it was created with.
    parentId: str | None = None
    partition: int | None = None
    through: str | None = None
    lastSlot: int | None = None  # the last Klaviyo budget slot its requests used (budget.py)
    parts: list[dict] | None = None  # in a partitioned job's status view: one line per partition
    # Klaviyo-side verification (shared/bulk/verification.py): the bulk jobs this document's
    # batches started and nobody has checked yet (bounded: see verification.MAX_PENDING), how
    # many are unchecked / were checked, and how many records Klaviyo refused in them (these
    # are counted in `counts.failed` too, and no longer in `counts.sent`).
    klaviyoJobs: list[KlaviyoJobRef] = Field(default_factory=list)
    klaviyoPending: int = 0
    klaviyoChecked: int = 0
    klaviyoFailed: int = 0
    createdAt: datetime
    startedAt: datetime | None = None
    updatedAt: datetime
    finishedAt: datetime | None = None

    @property
    def live(self) -> bool:
        return self.status.live

    def public(self) -> dict:
        """The status view served by the API and printed by the CLI (JSON-ready, no ids list)."""
        data = self.model_dump(mode="json", exclude={"id", "nextTaskPublished", "attempts",
                                                     "klaviyoJobs"})
        return {"jobId": self.id, **data}


class Lock(_Model):
    """One document per kind: the kind's latest job, and whether it holds the lock (with lease)."""

    kind: Kind
    jobId: str
    held: bool = True
    holder: str | None = None  # instance that last renewed the lease
    expiresAt: datetime
    acquiredAt: datetime

    def active(self, now: datetime) -> bool:
        return self.held and self.expiresAt > now


def progress(job: Job, now: datetime) -> dict:
    """read / total, percentage, throughput (records per second since the job started) and an
    ETA in seconds, for the status API, the console and the CLI. Unknown parts are None."""
    read = job.counts.read
    total = job.total
    end = job.finishedAt or now
    elapsed = (end - job.startedAt).total_seconds() if job.startedAt else 0.0
    rate = read / elapsed if elapsed > 0 and read else None
    percent: float | None = None
    if job.status == JobStatus.COMPLETED:
        percent = 100.0
    elif total:
        percent = round(min(100.0, 100.0 * read / total), 1)
    elif total == 0:
        percent = 100.0 if job.phase == "syncing" and not job.live else 0.0
    eta = None
    if job.live and rate and total is not None:
        eta = round(max(0, total - read) / rate, 1)
    return {"read": read, "total": total, "percent": percent,
            "ratePerSecond": round(rate, 1) if rate else None,
            "elapsedSeconds": round(elapsed, 1), "etaSeconds": eta}


# ---- results of transitions ------------------------------------------------------------------


class Conflict(Exception):
    """A live job of the kind holds the lock."""

    def __init__(self, job_id: str, status: str | None = None) -> None:
        super().__init__(f"job {job_id} is live")
        self.job_id = job_id
        self.status = status


class Created(BaseModel):
    job: Job
    took_over: str | None = None  # id of a dead job whose expired lease was taken over


# ---- pure transitions ------------------------------------------------------------------------


def new_job(
    kind: Kind, *, ids: Sequence[str] | None, delete_all: bool, now: datetime, lease: timedelta,
    started_by: str | None = None,
) -> Job:
    return Job(
        startedBy=started_by,
        id=new_job_id(),
        kind=kind,
        phase="deleting" if delete_all else "syncing",
        deleteAll=delete_all,
        idCount=len(ids) if ids is not None else None,
        total=len(ids) if ids is not None else None,
        leaseExpiresAt=now + lease,
        createdAt=now,
        updatedAt=now,
    )


def acquire(lock: Lock | None, job: Job, *, now: datetime, lease: timedelta) -> Lock:
    """The lock for `job` (raises Conflict when a live job holds an unexpired lease)."""
    if lock is not None and lock.active(now):
        raise Conflict(lock.jobId)
    return Lock(kind=job.kind, jobId=job.id, held=True, expiresAt=now + lease, acquiredAt=now)


def expire(job: Job, *, now: datetime) -> Job:
    """A live job whose lease lapsed: failed, "lease expired"."""
    return finish(job, JobStatus.FAILED, now=now, reason=LEASE_EXPIRED)


def finish(
    job: Job, status: JobStatus, *, now: datetime, reason: str | None = None,
    error_code: str | None = None,
) -> Job:
    return job.model_copy(update={
        "status": status,
        "reason": reason if reason is not None else job.reason,
        "errorCode": error_code if error_code is not None else job.errorCode,
        "updatedAt": now,
        "finishedAt": now,
        "leaseExpiresAt": None,
        "nextTaskPublished": False,
    })


def release(lock: Lock | None, job_id: str) -> Lock | None:
    """The lock after `job_id` ends (None: leave the lock document alone)."""
    if lock is None or lock.jobId != job_id:
        return None
    return lock.model_copy(update={"held": False})


def renew(lock: Lock, *, now: datetime, lease: timedelta, holder: str) -> Lock:
    return lock.model_copy(update={"expiresAt": now + lease, "holder": holder})


def apply_batch(
    job: Job, result: BatchResult, *, now: datetime, lease: timedelta, worker: str,
    max_errors: int, verified: Verified | None = None,
) -> Job:
    """`job` after one batch: counts added, errors appended (capped), cursor/phase advanced.

    With `verified`, the Klaviyo jobs it started join the unchecked ones, those it checked leave,
    and the records Klaviyo refused in them move from sent to failed. A job whose last batch is
    done completes only once no Klaviyo job is left unchecked; until then its phase is
    `verifying`."""
    verified = verified or Verified()
    counts = job.counts.model_copy()
    counts.failed += result.failed + verified.failed
    if job.phase == "deleting":
        counts.deleted += result.sent
    else:
        counts.read += result.read
        counts.sent += result.sent
        counts.skipped += result.skipped
    # Refused in a Klaviyo job: sent in an earlier batch of this document, failed after all.
    counts.sent = max(0, counts.sent - verified.failed)
    pending = verified.pending_after(job.klaviyoJobs)
    room = max(0, max_errors - len(job.errors))
    errors = job.errors + [JobError.of(e) for e in result.errors[:room]]
    errors += verified.errors[:max(0, max_errors - len(errors))]
    # Catalog jobs are checked within their batch: their refusals arrive as record errors.
    catalog_refused = sum(1 for e in result.errors if e.klaviyo_job)
    not_found_room = max(0, max_errors - len(job.notFoundIds))
    update: dict = {
        "counts": counts,
        "errors": errors,
        "notFound": job.notFound + len(result.not_found),
        "notFoundIds": job.notFoundIds + result.not_found[:not_found_room],
        "errorCount": job.errorCount + max(len(result.errors), result.failed) + verified.failed,
        "klaviyoJobs": pending,
        "klaviyoPending": len(pending),
        "klaviyoChecked": job.klaviyoChecked + len(verified.checked),
        "klaviyoFailed": job.klaviyoFailed + verified.failed + catalog_refused,
        "seq": job.seq + 1,
        "attempts": 0,
        "errorCode": None,  # the batch got through: earlier retries no longer matter
        "worker": worker,
        "updatedAt": now,
        "leaseExpiresAt": now + lease,
        "nextTaskPublished": False,
    }
    if job.status == JobStatus.QUEUED:
        update["status"] = JobStatus.RUNNING
    if job.phase == "deleting":
        if result.done:
            update.update(phase="syncing", cursor=None)
    elif result.cursor is not None:
        update["cursor"] = result.cursor
    advanced = job.model_copy(update=update)
    if job.status == JobStatus.STOPPING:
        return finish(advanced, JobStatus.STOPPED, now=now, reason="stopped on request")
    if (job.phase == "syncing" and result.done) or job.phase == "verifying":
        if pending:  # sent, but not yet known to be imported: not completed yet
            return advanced.model_copy(update={"phase": "verifying"})
        return finish(advanced, JobStatus.COMPLETED, now=now)
    return advanced


def no_progress(job: Job, result: BatchResult, after: str | None) -> bool:
    """A batch that neither finished nor moved on would be repeated forever."""
    if result.done or job.phase == "verifying":
        return False
    if job.phase == "deleting":
        return result.sent == 0
    return result.cursor is None or result.cursor == after
