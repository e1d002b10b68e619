"""The bulk job runner: start / stop / status of jobs, and running one page task.

A job is a chain of page tasks. Each task runs one exporter batch (`run_batch`, or
`delete_batch` in a deleteAll job's first phase), saves its result in ONE store transaction
that also checks the job is still where the task started (so a redelivered task never counts
twice), then queues the task for the next batch. Crashes anywhere are safe:

- before the save: the task is redelivered and the batch re-sent (Klaviyo writes are
  idempotent), counted once;
- after the save, before the next task is queued: the redelivered task finds its batch done and
  queues the next task itself (the job records whether it did);
- a worker that never comes back: the job's lease lapses, and the next start takes the lock over.

The backend (Firestore + Pub/Sub, or the embedded store + in-process queue) is chosen in one
place, `build_runner`.
"""

# Longer than the ~400 lines a module should be, on purpose for now: the sweep and prune phases,
# the Klaviyo-side verification and the typed task results all hook into this file at once.
# Once they are in, it splits into failure classification (TransientFailure, is_transient,
# error_code), backend wiring (select_backend, default_exporters, build_runner), job control
# (start/stop/status/release) and running one page task (issue 13 §1).

from __future__ import annotations

import dataclasses
import gc
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from shared.bulk import budget, partitions
from shared.bulk.base import KINDS, BatchResult, DeletingExporter, Exporter, Kind
from shared.bulk.tasks import (
    LocalTaskQueue,
    PageTask,
    PubsubTaskQueue,
    TaskQueue,
    TaskResult,
    topic_path,
)
from shared.deadline import Deadline
from shared.errors import (
    ApiError,
    ConfigError,
    ConnectorError,
    DeadlineExceeded,
    RetryableError,
    auth_failure_of,
)
from shared.log import get_logger
from shared.state import jobs
from shared.state.jobs import Conflict, Job, JobStatus
from shared.state.memory_store import MemoryStore
from shared.state.store import JobStore

if TYPE_CHECKING:
    from shared.bulk.verification import Verifier
    from shared.config import Settings

log = get_logger("bulk.runner")

Backend = Literal["gcp", "local"]
ExporterFactory = Callable[[Kind], Exporter]

__all__ = [
    "Backend",
    "Conflict",
    "EnqueueError",
    "Runner",
    "RunnerConfig",
    "build_runner",
    "select_backend",
]


class EnqueueError(Exception):
    """The job was created but its first task could not be queued (the job is failed)."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"could not queue the first task of job {job.id}")
        self.job = job


@dataclass(frozen=True)
class RunnerConfig:
    batch_deadline_seconds: float = 420.0
    lease_seconds: float = 900.0
    max_batch_attempts: int = 10
    max_errors: int = 100
    # Partitions of a full sync per kind (absent: 1, one chain); shared/bulk/partitions.py.
    partitions: Mapping[str, int] = field(default_factory=dict)
    klaviyo_share: float = 0.9  # of Klaviyo's bulk limits, for all partitions (budget.py)

    @classmethod
    def from_settings(cls, settings: Settings) -> RunnerConfig:
        return cls(
            batch_deadline_seconds=settings.bulk_batch_deadline_seconds,
            lease_seconds=settings.bulk_lease_seconds,
            max_batch_attempts=settings.bulk_max_batch_attempts,
            max_errors=settings.bulk_max_errors,
            partitions={"customers": settings.bulk_partitions_customers,
                        "orders": settings.bulk_partitions_orders},
            klaviyo_share=settings.bulk_klaviyo_share,
        )

    def partitions_for(self, kind: Kind, *, ids: Sequence[str] | None,
                       delete_all: bool) -> int:
        """Full syncs of partitionable kinds are split; a partial sync by ids is one chain."""
        if kind not in partitions.PARTITIONABLE or ids is not None or delete_all:
            return 1
        return max(1, int(self.partitions.get(kind, 1)))

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)


def _worker_id() -> str:
    instance = os.environ.get("K_REVISION") or socket.gethostname()
    return f"{instance}:{os.getpid()}"


class TransientFailure(RetryableError):
    """A transient infrastructure error (Firestore, Pub/Sub, the network) during a batch."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"transient {type(cause).__name__}")
        self.__cause__ = cause


def is_transient(exc: BaseException) -> bool:
    """Whether an exception that is not one of ours is an outage of Google's services or the
    network (retried), rather than a bug (which fails the job)."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    try:  # imported here: local mode (MemoryStore) runs without Google's clients loaded
        from google.api_core import exceptions as gexc

        from shared.state.firestore_store import ContentionError
    except ImportError:  # pragma: no cover - google-api-core comes with the Firestore client
        return False
    return isinstance(exc, (
        ContentionError,
        gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError,
        gexc.TooManyRequests, gexc.ResourceExhausted, gexc.Aborted, gexc.Unknown,
        gexc.BadGateway, gexc.GatewayTimeout, gexc.RetryError,
    ))


def error_code(exc: BaseException) -> str:
    """A short, PII-free code for an exception: the API's error code, else its HTTP status, else
    the type. A retry that ran out of time reports the API error that caused it. Refused
    credentials name the settings to fix (the job's status is where an operator looks)."""
    auth = auth_failure_of(exc)
    if auth is not None:
        return f"{auth.code or f'http_{auth.status}'}: fix {auth.fix_variables}"
    if isinstance(exc, TransientFailure) and exc.__cause__ is not None:
        return type(exc.__cause__).__name__
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ApiError):
            if cause.code:
                return str(cause.code)
            if cause.status is not None:
                return f"http_{cause.status}"
        cause = cause.__cause__
    return type(exc).__name__


class _GcPause:
    """Pauses CPython's cyclic garbage collector while batches run (concurrent batches share
    one pause; it ends with the last of them).

    A batch keeps thousands of freshly parsed documents and mapped payloads alive until it sends
    them. Every full collection walks all of them again and frees nothing (the exporters build no
    reference cycles): a third of the orders export's CPU in the benchmark (`python -m bench`).
    Reference counting still frees everything at once; cycles (e.g. an exception's traceback)
    are collected after the batch.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._resume:
                    gc.enable()


_gc_paused = _GcPause()


class Runner:
    def __init__(
        self,
        store: JobStore,
        queue: TaskQueue,
        exporters: ExporterFactory,
        *,
        config: RunnerConfig | None = None,
        clock: Callable[[], datetime] = jobs.utcnow,
        worker_id: str | None = None,
        counter: Callable[[Kind], int] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.counter = counter  # counts a job's records at its start (None: no total)
        # Checks the Klaviyo jobs that batches start (None: not checked; verification.py).
        self.verifier = verifier
        self._verified: dict[tuple[str, int], jobs.Verified] = {}  # (job, seq) -> to save
        self.store = store
        self.queue = queue
        self.exporters = exporters
        self.config = config or RunnerConfig()
        self.clock = clock
        self.worker_id = worker_id or _worker_id()
        self._slots: dict[tuple[str, int], int] = {}  # (partition, seq) -> last budget slot

    def __repr__(self) -> str:
        return f"Runner(store={self.store!r}, queue={self.queue!r})"

    # ---- API operations ---------------------------------------------------------------------

    def start(
        self, kind: Kind, *, ids: Sequence[str] | None = None, delete_all: bool = False,
        started_by: str | None = None,
    ) -> Job:
        """Create a job and queue its first task. Raises Conflict (a live job holds the kind's
        lock) or EnqueueError (the first task could not be queued; the job is failed)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        k = self.config.partitions_for(kind, ids=ids, delete_all=delete_all)
        created = self.store.create(kind, ids=ids, delete_all=delete_all, now=self.clock(),
                                    lease=self.config.lease, started_by=started_by,
                                    partitions=k)
        job = created.job
        if created.took_over:
            log.warning("bulk job lease expired; lock taken over", kind=kind,
                        jobId=job.id, deadJobId=created.took_over)
        log.info("bulk job created", jobId=job.id, kind=kind, idCount=job.idCount,
                 deleteAll=delete_all, partitions=k)
        try:
            if job.partitions:  # one chain of tasks per partition
                for part in partitions.plan(job, job.partitions):
                    self._publish_next(part)
            else:
                self._publish_next(job)
        except Exception as exc:
            failed = self.store.finish(job.id, JobStatus.FAILED, now=self.clock(),
                                       reason="could not queue the first task",
                                       error_code=error_code(exc))
            log.error("bulk job could not be queued", jobId=job.id, kind=kind,
                      error=type(exc).__name__)
            raise EnqueueError(failed or job) from exc
        return job

    def stop(self, kind: Kind, *, by: str | None = None) -> Job | None:
        """Ask the kind's live job to stop at its next batch boundary (None: no live job)."""
        job = self.store.request_stop(kind, now=self.clock(), by=by)
        if job is not None:
            log.info("bulk job stop requested", jobId=job.id, kind=kind, cursor=job.cursor,
                     status=job.status.value)
        return self._whole(job)

    def latest(self, kind: Kind) -> Job | None:
        return self._whole(self.store.latest_job(kind))

    def job(self, job_id: str) -> Job | None:
        return self._whole(self.store.get_job(job_id))

    def _whole(self, job: Job | None) -> Job | None:
        """A partitioned job as a whole: its partitions' counts added up, one line each."""
        if job is None or not job.partitions:
            return job
        return partitions.aggregate(job, self.store.get_parts(job),
                                    max_errors=self.config.max_errors)

    def force_release(self, kind: Kind, *, reason: str = "lock released by an operator",
                      by: str | None = None) -> Job | None:
        job = self.store.force_release(kind, now=self.clock(), reason=reason, by=by)
        log.warning("bulk lock force-released", kind=kind, jobId=job.id if job else None)
        log.warning("bulk audit", action="release", caller=by or "local", kind=kind,
                    jobId=job.id if job else None, outcome="released" if job else "not_held")
        return job

    def abandon(self, job_id: str, *, reason: str) -> Job | None:
        """End a live job now (e.g. the local CLI interrupted): stopped, lock released."""
        return self.store.finish(job_id, JobStatus.STOPPED, now=self.clock(), reason=reason)

    # ---- the worker -------------------------------------------------------------------------

    def run_task(self, task: PageTask) -> TaskResult:
        """Run one page task. Returns what happened (for logs and tests); raises only when the
        task should be delivered again (a retryable failure, or the store/queue is down)."""
        try:
            return self._run_task(task)
        finally:
            self._verified.pop((task.jobId, task.seq), None)  # a batch that was not saved
            if partitions.is_partition_id(task.jobId):
                self._settle_partition(task.jobId)

    def _run_task(self, task: PageTask) -> TaskResult:
        fields = task.log_fields()
        job = self.store.get_job(task.jobId)
        if job is None or job.kind != task.kind:
            log.warning("bulk task for an unknown job ignored", **fields)
            return "unknown-job"
        parent = self.store.get_job(job.parentId) if job.parentId else None
        if job.parentId is not None and job.live:
            if parent is None or not parent.live:  # failed elsewhere, taken over, released
                self.store.finish(job.id, JobStatus.STOPPED, now=self.clock(),
                                  reason="the job ended")
                log.info("bulk partition ended with its job", **fields)
                return "ended"
            if parent.status == JobStatus.STOPPING:  # stop reaches every partition
                self.store.finish(job.id, JobStatus.STOPPED, now=self.clock(),
                                  reason="stopped on request")
                return "stopped"
            if parent.status == JobStatus.QUEUED:
                self.store.mark_running(parent.id, now=self.clock(), lease=self.config.lease,
                                        worker=self.worker_id)
        if not job.live:
            log.info("bulk task for an ended job ignored", status=job.status.value, **fields)
            return "ended"
        if (job.seq, job.phase, job.cursor) != (task.seq, task.phase, task.cursor):
            if job.seq == task.seq + 1 and not job.nextTaskPublished:
                # The batch was saved but the next task may never have been queued.
                log.info("bulk task already done; queueing the next task", **fields)
                self._publish_next(job)
                return "requeued-next"
            log.info("bulk task already done, ignored", jobSeq=job.seq, **fields)
            return "duplicate"
        if job.status == JobStatus.STOPPING:
            stopped = self.store.finish(job.id, JobStatus.STOPPED, now=self.clock(),
                                        reason="stopped on request",
                                        only_if=frozenset({JobStatus.STOPPING}))
            if stopped is not None:
                self._log_end(stopped)
            return "stopped"
        if job.status == JobStatus.QUEUED:
            job = self.store.mark_running(job.id, now=self.clock(), lease=self.config.lease,
                                          worker=self.worker_id) or job
            log.info("bulk job running", jobId=job.id, kind=job.kind)
        if parent is not None:
            if job.partition == 0 and job.seq == 0 and parent.total is None:
                self._count(parent)  # the job's total, counted once by its first partition
        elif job.total is None and job.seq == 0:
            job = self._count(job)

        try:
            result = self._run_batch(job)
        except ConnectorError as exc:
            if not exc.retryable:
                return self._fail(job, exc)
            return self._retry_later(job, exc)
        except Exception as exc:
            if is_transient(exc):  # Firestore/Pub/Sub/network had a moment: deliver again
                return self._retry_later(job, TransientFailure(exc))
            return self._fail(job, exc)  # a bug: retrying will not help

        held = self._verified.get((job.id, job.seq))
        if jobs.no_progress(job, result, job.cursor) and not (held and held.held):
            ended = self.store.finish(job.id, JobStatus.FAILED, now=self.clock(),
                                      reason=f"batch {job.seq} made no progress",
                                      error_code="no_progress")
            if ended is not None:
                self._log_end(ended)
            return "failed"
        return self._save(job, result)

    def _count(self, job: Job) -> Job:
        """Count what the job will read, once, before its first batch; a failed count only
        leaves the progress without a total (the sync itself does not depend on it)."""
        if self.counter is None:
            return job
        try:
            total = self.counter(job.kind)
        except Exception as exc:
            log.warning("bulk job total not counted", jobId=job.id, kind=job.kind,
                        error=type(exc).__name__, errorCode=error_code(exc))
            return job
        counted = self.store.set_total(job.id, total)
        if counted is not None:
            log.info("bulk job total counted", jobId=job.id, kind=job.kind, total=total)
        return counted or job

    def _run_batch(self, job: Job) -> BatchResult:
        exporter = self.exporters(job.kind)
        deadline = Deadline.after(self.config.batch_deadline_seconds)
        if job.parentId is not None:  # a partition: its id range, its Klaviyo budget slots
            pacer = self._pacer(job)
            with _gc_paused(), budget.pacing(pacer):
                result = self._checked(job, deadline, lambda: exporter.run_batch(
                    after=job.cursor, ids=None, deadline=deadline, through=job.through))
            if pacer is not None and pacer.last_slot is not None:
                self._slots[(job.id, job.seq)] = pacer.last_slot
            return result
        with _gc_paused():
            if job.phase == "deleting":
                if not isinstance(exporter, DeletingExporter):  # the API lets no such job start
                    raise TypeError(f"{job.kind} cannot delete in Klaviyo (no delete_batch)")
                return exporter.delete_batch(deadline=deadline)
            ids = self.store.get_ids(job.id) if job.idCount is not None else None
            return self._checked(job, deadline, lambda: exporter.run_batch(
                after=job.cursor, ids=ids, deadline=deadline))

    def _checked(self, job: Job, deadline: Deadline,
                 send: Callable[[], BatchResult]) -> BatchResult:
        """The batch with its Klaviyo-side checks (shared/bulk/verification.py); what they
        found is saved with the batch."""
        if self.verifier is None:
            if job.phase == "verifying":
                raise RuntimeError("job is verifying but this runner has no Klaviyo verifier")
            return send()
        result, verified = self.verifier.around(job, send, deadline=deadline,
                                                max_errors=self.config.max_errors)
        self._verified[(job.id, job.seq)] = verified
        return result

    def _pacer(self, job: Job) -> budget.SlotPacer | None:
        parent = self.store.get_job(job.parentId) if job.parentId else None
        count = parent.partitions if parent is not None and parent.partitions else 1
        share = budget.share_for(job.kind, index=job.partition or 0, count=count,
                                 share=self.config.klaviyo_share)
        return budget.SlotPacer(share, last_slot=job.lastSlot) if share is not None else None

    def _settle_partition(self, partition_id: str) -> None:
        """After a partition's task: end the job if that was its last live partition; else keep
        the job's lease (and the kind's lock) alive, renewing it once half of it is spent."""
        part = self.store.get_job(partition_id)
        if part is None or part.parentId is None:
            return
        if not part.live:
            ended = self.store.end_partitioned(part.parentId, now=self.clock(),
                                               max_errors=self.config.max_errors)
            if ended is not None:
                self._log_end(ended)
            return
        parent = self.store.get_job(part.parentId)
        now = self.clock()
        if (parent is not None and parent.live and parent.leaseExpiresAt is not None
                and parent.leaseExpiresAt - now < self.config.lease / 2):
            self.store.renew_lease(parent.id, now=now, lease=self.config.lease,
                                   worker=self.worker_id)

    def _save(self, job: Job, result: BatchResult) -> TaskResult:
        saved = self.store.save_batch(
            job.id, seq=job.seq, phase=job.phase, cursor=job.cursor, result=result,
            now=self.clock(), lease=self.config.lease, worker=self.worker_id,
            max_errors=self.config.max_errors,
            last_slot=self._slots.pop((job.id, job.seq), None),
            verified=self._verified.pop((job.id, job.seq), None),
        )
        if saved is None:
            log.info("bulk batch result discarded: the job moved on", jobId=job.id,
                     kind=job.kind, seq=job.seq)
            return "duplicate"
        log.info("bulk batch saved", jobId=saved.id, kind=saved.kind, phase=job.phase,
                 seq=job.seq, cursor=saved.cursor, read=result.read, sent=result.sent,
                 skipped=result.skipped, failed=result.failed,
                 counts=saved.counts.model_dump(), status=saved.status.value)
        if saved.live:
            self._publish_next(saved)
        else:
            self._log_end(saved)
        return "saved"

    def _retry_later(self, job: Job, exc: ConnectorError) -> TaskResult:
        code = error_code(exc)
        if isinstance(exc, DeadlineExceeded) and code == "DeadlineExceeded" and job.errorCode:
            code = job.errorCode  # out of time again: the earlier attempt's error says more
        updated = self.store.record_failure(
            job.id, seq=job.seq, now=self.clock(), lease=self.config.lease,
            worker=self.worker_id, max_attempts=self.config.max_batch_attempts, error_code=code,
        )
        if updated is None:  # the job ended or moved on meanwhile: nothing to retry
            return "duplicate"
        if updated.status == JobStatus.FAILED:
            self._log_end(updated)
            return "failed"
        if updated.status == JobStatus.STOPPING:  # asked to stop: no need to get this batch done
            stopped = self.store.finish(job.id, JobStatus.STOPPED, now=self.clock(),
                                        reason="stopped on request",
                                        only_if=frozenset({JobStatus.STOPPING}))
            if stopped is not None:
                self._log_end(stopped)
            return "stopped"
        auth = auth_failure_of(exc)
        if auth is not None:
            log.error(f"credentials refused: fix {auth.fix_variables}; bulk batch will be retried",
                      jobId=job.id, kind=job.kind, seq=job.seq, errorCode=code,
                      fixVariables=auth.fix_variables, attempt=updated.attempts)
        else:
            log.warning("bulk batch failed, will be retried", jobId=job.id, kind=job.kind,
                        seq=job.seq, cursor=job.cursor, errorCode=code,
                        attempt=updated.attempts)
        raise exc

    def _fail(self, job: Job, exc: BaseException) -> TaskResult:
        code = error_code(exc)
        fields = exc.log_fields() if isinstance(exc, ApiError) else {}
        log.error("bulk batch failed terminally", jobId=job.id, kind=job.kind, seq=job.seq,
                  cursor=job.cursor, error=type(exc).__name__, **fields)
        ended = self.store.finish(job.id, JobStatus.FAILED, now=self.clock(),
                                  reason=f"batch {job.seq} failed: {type(exc).__name__}",
                                  error_code=code)
        if ended is not None:
            self._log_end(ended)
        return "failed"

    def _publish_next(self, job: Job) -> None:
        task = PageTask(jobId=job.id, kind=job.kind, phase=job.phase, seq=job.seq,
                        cursor=job.cursor)
        self.queue.publish(task)
        self.store.mark_published(job.id, job.seq)

    @staticmethod
    def _log_end(job: Job) -> None:
        log_fn = log.info if job.status != JobStatus.FAILED else log.error
        log_fn("bulk job ended", jobId=job.id, kind=job.kind, status=job.status.value,
               reason=job.reason, errorCode=job.errorCode, cursor=job.cursor, batches=job.seq,
               counts=job.counts.model_dump())


# ---- wiring: the ONE place that picks the backend ----------------------------------------------


def select_backend(settings: Settings, *, local: bool = False) -> Backend:
    """`gcp` (Firestore + Pub/Sub) when GOOGLE_CLOUD_PROJECT or an emulator host is set (or
    BULK_BACKEND=gcp); otherwise the embedded `local` store and queue."""
    if local or settings.bulk_backend == "local":
        return "local"
    if settings.bulk_backend == "gcp" or settings.google_cloud_project or (
        settings.firestore_emulator_host or settings.pubsub_emulator_host
    ):
        if not settings.google_cloud_project:
            raise ConfigError("invalid configuration: GOOGLE_CLOUD_PROJECT (missing: the bulk "
                              "job store and task topic need it)")
        return "gcp"
    if os.environ.get("K_SERVICE"):
        raise ConfigError("invalid configuration: GOOGLE_CLOUD_PROJECT (missing: on Cloud "
                          "Functions the bulk job store must be Firestore)")
    return "local"


def default_exporters(settings: Settings) -> ExporterFactory:
    """One exporter per kind (built on first use) sharing one CT client and one Klaviyo client,
    the latter drawing on the process-wide Klaviyo rate limiter."""
    from shared.commercetools.client import CommercetoolsClient
    from shared.klaviyo.client import KlaviyoClient
    from shared.klaviyo.limiter import shared_limiter

    ct = CommercetoolsClient.from_settings(settings)
    # Partitions draw on their fixed slots of the account's budget (budget.py) on top of it.
    limiter = budget.PacedLimiter(shared_limiter())
    klaviyo = KlaviyoClient.from_settings(settings, limiter=limiter)
    built: dict[str, Exporter] = {}

    def factory(kind: Kind) -> Exporter:
        if kind not in built:
            from shared.bulk.exporters import build_exporter

            built[kind] = build_exporter(kind, settings, ct, klaviyo)
        return built[kind]

    return factory


def build_runner(
    settings: Settings, *, exporters: ExporterFactory | None = None, local: bool = False
) -> Runner:
    backend = select_backend(settings, local=local)
    config = RunnerConfig.from_settings(settings)
    factory = exporters or default_exporters(settings)
    counter = None
    verifier = None
    if exporters is None:
        from shared.bulk.totals import commercetools_counter
        from shared.bulk.verification import build_verifier
        from shared.commercetools.client import CommercetoolsClient

        counter = commercetools_counter(CommercetoolsClient.from_settings(settings))
        verifier = build_verifier(settings)
    store: JobStore
    queue: TaskQueue
    if backend == "gcp":
        from shared.state.firestore_store import FirestoreStore

        assert settings.google_cloud_project
        store = FirestoreStore.connect(settings.google_cloud_project,
                                       prefix=settings.bulk_collection_prefix,
                                       database=settings.bulk_firestore_database)
        queue = PubsubTaskQueue(topic_path(settings.google_cloud_project,
                                           settings.bulk_tasks_topic))
        return Runner(store, queue, factory, config=config, counter=counter, verifier=verifier)
    store = MemoryStore(settings.bulk_local_state_file or None)
    # One in-process worker thread runs every task: partitions would only take turns on it
    # (each waiting for its share of the Klaviyo budget), so a local job is one chain.
    config = dataclasses.replace(config, partitions={})
    local_queue = LocalTaskQueue()
    runner = Runner(store, local_queue, factory, config=config, counter=counter,
                    verifier=verifier)
    local_queue.set_handler(runner.run_task)
    return runner
