"""Partitions of a bulk job: the id space split into K ranges, each its own chain of page tasks.

commercetools ids are random UUIDs (lowercase hex), so ranges cut at evenly spaced 4-hex-digit
prefixes hold about the same number of records. Partition i reads the ids after `after_i` up to
and including `through_i` (keyset paging inside the range: `id > cursor and id <= through`). The
cuts are plain strings, so the ranges cover every possible id exactly once, UUID or not:

    p0: id <= "2000";  p1: "2000" < id <= "4000";  ...;  p7: id > "e000"

Each partition is a job document of its own (`<jobId>-p<i>`: cursor, counts, attempts), so K
workers never write the same document per batch. The job document stays the one the API, the
lock and the lease are about: it is written when the job starts, when its first partition runs,
when its lease is renewed (at most every half lease), and when its partitions have all ended.
Everything here is pure; the store runs it inside its transactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared.bulk.base import Kind
from shared.state.jobs import Counts, Job, JobError, JobStatus

# Kinds whose full syncs are partitioned. Catalog kinds are small (one chain reads them in
# minutes) and their deleteAll phase is not range-shaped.
PARTITIONABLE: tuple[Kind, ...] = ("customers", "orders")
MAX_PARTITIONS = 64
_SPACE = 16 ** 4  # 4-hex-digit prefixes

__all__ = [
    "MAX_PARTITIONS",
    "PARTITIONABLE",
    "aggregate",
    "is_partition_id",
    "partition_id",
    "plan",
    "ranges",
    "verdict",
]


def ranges(k: int) -> list[tuple[str | None, str | None]]:
    """K (after, through) ranges: ids > after (None: from the start) and <= through (None: to the
    end)."""
    if not 1 <= k <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be between 1 and {MAX_PARTITIONS}")
    cuts = [format(i * _SPACE // k, "04x") for i in range(1, k)]
    bounds: list[str | None] = [None, *cuts, None]
    return [(bounds[i], bounds[i + 1]) for i in range(k)]


def partition_id(job_id: str, index: int) -> str:
    return f"{job_id}-p{index}"


def is_partition_id(job_id: str) -> bool:
    head, sep, tail = job_id.rpartition("-p")
    return bool(sep and head and tail.isdigit())


def plan(parent: Job, k: int) -> list[Job]:
    """The partition documents of a new job (queued, each at the start of its range)."""
    return [
        Job(id=partition_id(parent.id, i), kind=parent.kind, parentId=parent.id, partition=i,
            cursor=after, through=through, startedBy=parent.startedBy,
            leaseExpiresAt=parent.leaseExpiresAt, createdAt=parent.createdAt,
            updatedAt=parent.updatedAt)
        for i, (after, through) in enumerate(ranges(k))
    ]


def verdict(parts: Sequence[Job | None]) -> tuple[JobStatus, str | None, str | None] | None:
    """How the job ends given its partitions (status, reason, error code), or None while it goes
    on. One failed partition fails the job (the others stop at their next task); once all have
    ended it is completed if every one completed, else stopped."""
    for index, part in enumerate(parts):
        if part is None:
            return JobStatus.FAILED, f"partition {index} is missing", "partition_missing"
        if part.status == JobStatus.FAILED:
            return JobStatus.FAILED, f"partition {index}: {part.reason}", part.errorCode
    if any(part is not None and part.live for part in parts):
        return None
    if all(part is not None and part.status == JobStatus.COMPLETED for part in parts):
        return JobStatus.COMPLETED, None, None
    return JobStatus.STOPPED, "stopped on request", None


def aggregate(parent: Job, parts: Sequence[Job | None], *, max_errors: int = 100) -> Job:
    """The job as a whole: its partitions' counts, errors and batches added up, and one line per
    partition (`parts`) for the status view. The job's own status, lease and total are kept."""
    present = [p for p in parts if p is not None]
    counts = Counts()
    for part in present:
        for name in Counts.model_fields:
            setattr(counts, name, getattr(counts, name) + getattr(part.counts, name))
    errors: list[JobError] = []
    for part in present:
        errors.extend(part.errors[: max(0, max_errors - len(errors))])
    latest = max(present, key=lambda p: p.updatedAt, default=None)
    retrying = [p for p in present if p.live and p.errorCode]
    updated: datetime = max([parent.updatedAt, *(p.updatedAt for p in present)])
    live = [p for p in present if p.live]
    # Every partition still going is only waiting for Klaviyo (verification.py): so is the job.
    verifying = parent.live and bool(live) and all(p.phase == "verifying" for p in live)
    return parent.model_copy(update={
        "phase": "verifying" if verifying else parent.phase,
        "counts": counts,
        "errors": errors,
        "errorCount": sum(p.errorCount for p in present),
        # Klaviyo-side verification (shared/bulk/verification.py), summed over the partitions.
        "klaviyoPending": sum(p.klaviyoPending for p in present),
        "klaviyoChecked": sum(p.klaviyoChecked for p in present),
        "klaviyoFailed": sum(p.klaviyoFailed for p in present),
        "seq": sum(p.seq for p in present),
        "attempts": max((p.attempts for p in present), default=0),
        "errorCode": parent.errorCode or (retrying[0].errorCode if retrying else None),
        "worker": latest.worker if latest is not None else parent.worker,
        "updatedAt": updated,
        "parts": [
            {"partition": i, "status": p.status.value if p else None,
             "cursor": p.cursor if p else None, "through": p.through if p else None,
             "read": p.counts.read if p else 0, "batches": p.seq if p else 0,
             "phase": p.phase if p else None}
            for i, p in enumerate(parts)
        ],
    })
