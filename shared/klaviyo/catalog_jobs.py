"""Klaviyo catalog bulk jobs for both functions: submitting item/variant/category jobs within
Klaviyo's limits, waiting for them, and reading which records each job refused (the bulk catalog
exporters; realtime's variant writes).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.deadline import Deadline
from shared.errors import DeadlineExceeded
from shared.klaviyo import MAX_CATALOG_BULK, KlaviyoClient
from shared.klaviyo.batches import (
    MAX_PAYLOAD_BYTES,
    Outcome,
    RecordError,
    Rejected,
    chunked,
    json_size,
    send_isolating,
)
from shared.klaviyo.bulk import PENDING_STATUSES, CatalogOp
from shared.klaviyo.catalog import KINDS, CatalogKind
from shared.log import get_logger

log = get_logger("klaviyo.catalog_jobs")

# ---- catalog jobs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogRecord:
    """One catalog resource (built with `catalog_resource`) and the CT record it belongs to."""

    ct_id: str
    resource: dict[str, Any]


@dataclass
class CatalogJob:
    kind: CatalogKind
    op: CatalogOp
    job_id: str
    records: list[CatalogRecord]
    attributes: dict[str, Any] | None = None  # final job attributes once finished

    @property
    def finished(self) -> bool:
        return self.attributes is not None


def _catalog_locator(kind: CatalogKind) -> Callable[[list[Any], str], list[int] | None]:
    pattern = re.compile(rf"^/data/attributes/{re.escape(KINDS[kind].bulk_key)}/data/(\d+)(?:/|$)")

    def locate(part: list[Any], pointer: str) -> list[int] | None:
        m = pattern.match(pointer)
        return [int(m.group(1))] if m else None

    return locate


def submit_catalog_jobs(
    klaviyo: KlaviyoClient, kind: CatalogKind, op: CatalogOp, records: Sequence[CatalogRecord],
    *, deadline: Deadline, max_count: int = MAX_CATALOG_BULK, max_bytes: int = MAX_PAYLOAD_BYTES,
) -> tuple[list[CatalogJob], Outcome[CatalogRecord]]:
    """Start catalog bulk jobs of ≤100 resources (records a job was refused for are isolated);
    returns the started jobs and the submission outcome (`sent` = accepted into a job)."""
    jobs: list[CatalogJob] = []

    def send(part: list[CatalogRecord]) -> str:
        job_id = klaviyo.create_catalog_bulk_job(kind, op, [r.resource for r in part],
                                                 deadline=deadline)
        jobs.append(CatalogJob(kind, op, job_id, list(part)))
        return job_id

    outcome: Outcome[CatalogRecord] = Outcome()
    locate = _catalog_locator(kind)
    for chunk in chunked(records, max_count=max_count, max_bytes=max_bytes,
                         size=lambda r: json_size(r.resource)):
        outcome.extend(send_isolating(chunk, send, ct_id=lambda r: r.ct_id, locate=locate))
    return jobs, outcome


@dataclass(frozen=True)
class PollPolicy:
    """Seconds between polls of unfinished jobs: `first`, growing by `factor` up to `cap`."""

    first: float = 1.0
    factor: float = 1.5
    cap: float = 10.0


def wait_for_catalog_jobs(
    klaviyo: KlaviyoClient, jobs: Sequence[CatalogJob], *, deadline: Deadline,
    poll: PollPolicy = PollPolicy(), sleep: Callable[[float], None] = time.sleep,
) -> Outcome[CatalogRecord]:
    """Poll the jobs until none is `queued` or `processing`; per-record job errors become
    rejections (the error pointer gives the record's index in its job).

    Jobs are polled in the order they were started and a round stops at the first unfinished
    one: Klaviyo works through them roughly in order, so later ones are rarely done earlier and
    polling them would spend the catalog-bulk rate budget (shared with job creation) for nothing.
    """
    pending = [job for job in jobs if not job.finished]
    delay = poll.first
    requests = 0
    while pending:
        still: list[CatalogJob] = []
        for position, job in enumerate(pending):
            attributes = klaviyo.get_catalog_bulk_job(job.kind, job.op, job.job_id,
                                                      deadline=deadline)
            requests += 1
            if attributes.get("status") in PENDING_STATUSES:
                still = pending[position:]
                break
            job.attributes = attributes
        pending = still
        if pending:
            if delay >= deadline.remaining():
                raise DeadlineExceeded(
                    f"{len(pending)} catalog job(s) still running at the deadline")
            sleep(delay)
            delay = min(poll.cap, delay * poll.factor)
    outcome = job_outcome(jobs)
    outcome.requests = requests
    return outcome


def job_outcome(jobs: Sequence[CatalogJob]) -> Outcome[CatalogRecord]:
    """Sent/rejected records of finished jobs (from their errors and status)."""
    outcome: Outcome[CatalogRecord] = Outcome()
    for job in jobs:
        attributes = job.attributes or {}
        locate = _catalog_locator(job.kind)
        bad: dict[int, RecordError] = {}
        unplaced = 0
        for error in attributes.get("errors") or []:
            if not isinstance(error, dict):
                continue
            pointer = (error.get("source") or {}).get("pointer")
            indices = locate(job.records, pointer) if isinstance(pointer, str) else None
            if not indices or not 0 <= indices[0] < len(job.records):
                unplaced += 1
                continue
            index = indices[0]
            status = error.get("status")
            bad.setdefault(index, RecordError(
                ct_id=job.records[index].ct_id,
                status=int(status) if isinstance(status, (int, str)) and str(status).isdigit()
                else None,
                code=error.get("code"), pointer=pointer, klaviyo_job=job.job_id))
        failed_count = attributes.get("failed_count") or 0
        if attributes.get("status") == "cancelled" or unplaced or failed_count > len(bad):
            # Klaviyo says records failed but not which: report every record not known to be
            # fine, rather than count a failure as sent.
            log.warning("catalog job failures not attributable to records", jobId=job.job_id,
                        kind=job.kind, op=job.op, status=attributes.get("status"),
                        failedCount=failed_count, attributed=len(bad))
            if attributes.get("status") == "cancelled" or failed_count > len(bad):
                for index, record in enumerate(job.records):
                    bad.setdefault(index, RecordError(ct_id=record.ct_id, status=None,
                                                      code=f"job_{attributes.get('status')}",
                                                      klaviyo_job=job.job_id))
        for index, record in enumerate(job.records):
            if index in bad:
                outcome.rejected.append(Rejected(record, bad[index]))
            else:
                outcome.sent.append(record)
    return outcome


def run_catalog_jobs(
    klaviyo: KlaviyoClient,
    groups: Sequence[tuple[CatalogKind, CatalogOp, Sequence[CatalogRecord]]],
    *, deadline: Deadline, poll: PollPolicy = PollPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome[CatalogRecord]:
    """Start every group's jobs, then wait for all of them (one phase)."""
    outcome: Outcome[CatalogRecord] = Outcome()
    started: list[CatalogJob] = []
    for kind, op, records in groups:
        if not records:
            continue
        jobs, submitted = submit_catalog_jobs(klaviyo, kind, op, records, deadline=deadline)
        started.extend(jobs)
        outcome.rejected.extend(submitted.rejected)
        outcome.requests += submitted.requests
    if started:
        done = wait_for_catalog_jobs(klaviyo, started, deadline=deadline, poll=poll, sleep=sleep)
        outcome.sent.extend(done.sent)
        outcome.rejected.extend(done.rejected)
        outcome.requests += done.requests
    return outcome
