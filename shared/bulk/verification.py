"""Klaviyo-side verification: a bulk job says `completed` only once Klaviyo has processed what it
was sent, and reports the records Klaviyo refused on its side.

A profile bulk import job (`POST /api/profile-bulk-import-jobs`, 202) is validated when it is
created, but profiles are processed afterwards, and a profile Klaviyo refuses then (e.g. a phone
number in E.164 form that is not a real number) is listed only in the job's import errors
(`GET /api/profile-bulk-import-jobs/{id}/import-errors`, paged). So each batch's import job ids
are kept on its job document (`Job.klaviyoJobs`: id and profile count, removed once checked) and
checked *as we go*:

- while a batch reads commercetools, a background check looks at the oldest unchecked jobs (at
  most `checks_per_batch`, stopping at the first Klaviyo is still processing: it works through
  them in order); this overlaps the reading, so it costs the batch no time;
- a finished job's `failed_count` is counted, and its first import errors (as many as the job's
  error list has room for: one page of ≤100, usually) are read for the commercetools id: the
  profile's `external_id` in `original_payload`. The rest of the payload (email, name, phone) is
  personal data and is dropped unread: never stored, never logged;
- a document never holds more than `max_pending` unchecked jobs (a few hundred bytes each, far
  below Firestore's 1 MiB per document): with that many, the next batch first waits for the
  oldest (polling with the catalog jobs' PollPolicy) and, if Klaviyo is still behind, sends
  nothing this time (the task saves what it checked and queues the next one);
- after the last batch, the remaining jobs are checked at once (waiting up to `wait_seconds`);
  if Klaviyo is still processing, the document's phase becomes `verifying` and each following
  page task waits for them in turn. Only then does it complete.

Every check is a GET in the profile bulk import family, which shares Klaviyo's 150/min with the
POSTs: a partition's checks run inside its budget slots (shared/bulk/budget.py), like its POSTs.
A check Klaviyo does not answer (429, 5xx, a timeout) is retried by the next task, never taken
for success: in the background check it leaves the job unchecked, in the `verifying` phase it
fails the task, which Pub/Sub delivers again. A job Klaviyo says it does not know (404) cannot
be verified and counts all its records as refused.

Catalog bulk jobs are checked within their batch (shared/klaviyo/catalog_jobs.py: the create /
update repair needs their outcome); the records their `errors` name carry the Klaviyo job id and
are counted in `klaviyoFailed` too. Event bulk create jobs have no job to read (202, no id).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.bulk.base import BatchResult
from shared.deadline import Deadline
from shared.errors import ConnectorError, KlaviyoError
from shared.klaviyo.bulk import PENDING_STATUSES, recording_jobs
from shared.klaviyo.catalog_jobs import PollPolicy
from shared.klaviyo.client import KlaviyoClient
from shared.log import get_logger
from shared.state.jobs import Job, JobError, KlaviyoJobRef, Verified

if TYPE_CHECKING:
    from shared.config import Settings

log = get_logger("bulk.verification")

MAX_PENDING = 50  # unchecked Klaviyo jobs per job document (~100 bytes each)
UNATTRIBUTED = "unknown"  # ctId of a refusal Klaviyo did not say whose it was

__all__ = ["MAX_PENDING", "Verifier", "build_verifier"]


@dataclass
class _Round:
    """What a check found so far (merged into one `Verified`)."""

    checked: list[str]
    failed: int
    errors: list[JobError]


class Verifier:
    def __init__(
        self, klaviyo: KlaviyoClient, *, poll: PollPolicy = PollPolicy(),
        wait_seconds: float = 60.0, max_pending: int = MAX_PENDING, checks_per_batch: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.klaviyo = klaviyo
        self.poll = poll
        self.wait_seconds = wait_seconds
        self.max_pending = max_pending
        self.checks_per_batch = checks_per_batch
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"Verifier(wait_seconds={self.wait_seconds}, max_pending={self.max_pending})"

    # ---- around one page task -----------------------------------------------------------------

    def around(self, job: Job, send: Callable[[], BatchResult], *, deadline: Deadline,
               max_errors: int) -> tuple[BatchResult, Verified]:
        """Run one batch of `job` (`send`) with the checks that go with it; returns the batch's
        result and what to save with it. In the `verifying` phase nothing is sent."""
        room = max(0, max_errors - len(job.errors))
        pending = list(job.klaviyoJobs)
        if job.phase == "verifying":
            began = time.monotonic()
            found = self.check(pending, deadline=deadline, wait_for=0, strict=True, room=room)
            if len(found.checked) < len(pending):
                self._pause(began, deadline)
            return BatchResult(cursor=job.cursor, done=True), _verified(found)
        if len(pending) >= self.max_pending:  # back-pressure: Klaviyo is far behind
            began = time.monotonic()
            found = self.check(pending, deadline=deadline, wait_for=self.max_pending - 1,
                               strict=False, room=room)
            if len(pending) - len(found.checked) >= self.max_pending:
                self._pause(began, deadline)
                log.warning("bulk batch held back: too many Klaviyo jobs unchecked",
                            jobId=job.id, kind=job.kind, pending=len(pending))
                verified = _verified(found)
                verified.held = True
                return BatchResult(cursor=job.cursor, done=False), verified
            result, started = self._send(send)
            return result, self._after(job, result, found, pending, started, deadline, room)
        # As we go: the oldest unchecked jobs are looked at while the batch reads.
        early = _Round([], 0, [])
        failure: list[BaseException] = []

        def look() -> None:
            try:
                found = self.check(pending[:self.checks_per_batch], deadline=deadline,
                                   wait_for=None, strict=False, room=room)
                early.checked, early.failed, early.errors = (found.checked, found.failed,
                                                             found.errors)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the task's thread
                failure.append(exc)

        looker = None
        if pending:
            context = contextvars.copy_context()  # the partition's budget slots, the logger
            looker = threading.Thread(target=context.run, args=(look,),
                                      name="klaviyo-verify", daemon=True)
            looker.start()
        try:
            result, started = self._send(send)
        finally:
            if looker is not None:
                looker.join()
        if failure:
            raise failure[0]
        return result, self._after(job, result, early, pending, started, deadline,
                                   max(0, room - len(early.errors)))

    def _pause(self, began: float, deadline: Deadline) -> None:
        """A task that found Klaviyo still processing lasts at least one poll interval, so that
        a short BULK_VERIFY_WAIT_SECONDS never turns the chain into a loop of GETs and writes
        (a Firestore document sustains about one write a second)."""
        rest = self.poll.first - (time.monotonic() - began)
        if 0 < rest < deadline.remaining():
            self._sleep(rest)

    @staticmethod
    def _send(send: Callable[[], BatchResult]) -> tuple[BatchResult, list[KlaviyoJobRef]]:
        with recording_jobs() as started:
            result = send()
        return result, [KlaviyoJobRef(id=s.job_id, records=s.records) for s in started]

    def _after(self, job: Job, result: BatchResult, found: _Round,
               pending: list[KlaviyoJobRef], started: list[KlaviyoJobRef], deadline: Deadline,
               room: int) -> Verified:
        """After the batch: the last one checks everything left now (a moment's wait, or the
        `verifying` phase takes over); the others only note the jobs they started."""
        verified = _verified(found)
        verified.started = started
        if result.done:
            left = verified.pending_after(pending)
            if left:
                last = self.check(left, deadline=deadline, wait_for=0, strict=False,
                                  room=room)
                verified.checked += last.checked
                verified.failed += last.failed
                verified.errors += last.errors
        if verified.checked or verified.failed:
            log.info("Klaviyo jobs checked", jobId=job.id, kind=job.kind,
                     checked=len(verified.checked), klaviyoFailed=verified.failed,
                     pending=len(verified.pending_after(pending)))
        return verified

    # ---- checking -----------------------------------------------------------------------------

    def check(self, refs: Sequence[KlaviyoJobRef], *, deadline: Deadline, wait_for: int | None,
              strict: bool, room: int) -> _Round:
        """Check `refs` oldest first; a round stops at the first job Klaviyo is still processing.

        `wait_for=None`: one round. Otherwise rounds repeat (PollPolicy pauses) until at most
        `wait_for` jobs are left unchecked, `wait_seconds` pass, or half the time left is used
        (the rest is the task's, to save). `strict`: a Klaviyo outage (429/5xx after the
        transport's retries, a timeout) is raised; otherwise it ends the check, the jobs stay
        unchecked."""
        found = _Round([], 0, [])
        remaining = list(refs)
        delay = self.poll.first
        stop_at = time.monotonic() + min(self.wait_seconds, deadline.remaining() / 2)
        while remaining:
            done = 0
            try:
                for ref in remaining:
                    attributes = self._status(ref, deadline)
                    if attributes is not None and attributes.get("status") in PENDING_STATUSES:
                        break
                    failed, errors = self._refused(ref, attributes, deadline,
                                                   max(0, room - len(found.errors)))
                    found.checked.append(ref.id)
                    found.failed += failed
                    found.errors += errors
                    done += 1
            except ConnectorError as exc:
                if strict or not exc.retryable:
                    raise
                log.warning("Klaviyo job check failed; it stays unchecked", klaviyoJobId=ref.id,
                            error=type(exc).__name__, status=getattr(exc, "status", None))
                return found
            remaining = remaining[done:]
            if wait_for is None or len(remaining) <= wait_for:
                break
            if time.monotonic() + delay > stop_at or delay >= deadline.remaining():
                break
            self._sleep(delay)
            delay = min(self.poll.cap, delay * self.poll.factor)
        return found

    def _status(self, ref: KlaviyoJobRef, deadline: Deadline) -> dict[str, Any] | None:
        """The job's attributes; None when Klaviyo answers that it cannot be read (a definite
        4xx such as 404: the job is unknown to it)."""
        try:
            return self.klaviyo.get_profile_bulk_import_job(ref.id, deadline=deadline)
        except KlaviyoError as exc:
            if exc.retryable:
                raise
            log.error("Klaviyo job cannot be read; its records count as refused",
                      klaviyoJobId=ref.id, status=exc.status, records=ref.records)
            return None

    def _refused(self, ref: KlaviyoJobRef, attributes: dict[str, Any] | None,
                 deadline: Deadline, room: int) -> tuple[int, list[JobError]]:
        """How many of the job's records Klaviyo refused, and the first of them (≤ room)."""
        if attributes is None:
            return ref.records, [JobError(ctId=UNATTRIBUTED, code="klaviyo_job_unreadable",
                                          klaviyoJobId=ref.id)][:room]
        status = attributes.get("status")
        total = _int(attributes.get("total_count"), ref.records)
        failed = _int(attributes.get("failed_count"), 0)
        if status != "complete":  # cancelled: what it did not complete did not happen
            failed = max(failed, total - _int(attributes.get("completed_count"), 0))
        errors: list[JobError] = []
        if failed > 0 and room > 0:
            seen: set[str] = set()
            for error in self.klaviyo.iter_profile_bulk_import_errors(
                    ref.id, page_size=min(100, room), deadline=deadline):
                ct_id = _external_id(error.get("original_payload"))
                if ct_id is not None and ct_id in seen:
                    continue
                if ct_id is not None:
                    seen.add(ct_id)
                raw_source = error.get("source")
                source = raw_source if isinstance(raw_source, dict) else {}
                errors.append(JobError(ctId=ct_id or UNATTRIBUTED, code=error.get("code"),
                                       pointer=source.get("pointer"), klaviyoJobId=ref.id))
                if len(errors) >= min(room, failed):
                    break
            if status != "complete" and len(errors) < room:
                errors.append(JobError(ctId=UNATTRIBUTED, code=f"klaviyo_job_{status}",
                                       klaviyoJobId=ref.id))
        failed = max(failed, len({e.ctId for e in errors if e.ctId != UNATTRIBUTED}))
        if ref.records:  # never more than went in (the job's counts are Klaviyo's to get right)
            failed = min(failed, ref.records)
        if failed:
            log.warning("Klaviyo refused records of a bulk import job", klaviyoJobId=ref.id,
                        status=status, failed=failed, records=ref.records)
        return failed, errors


def _verified(found: _Round) -> Verified:
    return Verified(checked=list(found.checked), failed=found.failed, errors=list(found.errors))


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _external_id(payload: Any) -> str | None:
    """The commercetools id of the profile an import error is about (its `external_id`; the
    rest of the payload is personal data and is not looked at)."""
    if isinstance(payload, dict):
        value = payload.get("external_id")
        if isinstance(value, str) and value:
            return value
    return None


def build_verifier(settings: Settings) -> Verifier:
    """A verifier on its own Klaviyo client, drawing on the same process-wide limiter and the
    current partition's budget slots as the exporters' client."""
    from shared.bulk.budget import PacedLimiter
    from shared.klaviyo.limiter import shared_limiter

    klaviyo = KlaviyoClient.from_settings(settings, limiter=PacedLimiter(shared_limiter()))
    poll = PollPolicy(first=settings.bulk_job_poll_seconds,
                      cap=max(settings.bulk_job_poll_seconds, 10.0))
    return Verifier(klaviyo, poll=poll, wait_seconds=settings.bulk_verify_wait_seconds)
