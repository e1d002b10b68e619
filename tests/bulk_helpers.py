"""Test doubles for the bulk runner: a list-backed exporter, a list task queue, a settable clock."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypedDict, Unpack

from shared.bulk.base import BatchResult, Exporter, Kind
from shared.bulk.runner import Runner, RunnerConfig
from shared.bulk.tasks import PageTask, TaskResult
from shared.deadline import Deadline
from shared.klaviyo.batches import RecordError
from shared.state.jobs import Job, Lock
from shared.state.store import JobStore
from tests.checks import known


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)


@dataclass
class ListExporter:
    """Exports sorted string ids `page` at a time; `fail` maps a batch's first id to an exception
    raised after (or before, with `fail_before`) "sending". Records every id sent, in order."""

    kind: Kind
    records: list[str]
    page: int = 3
    bad: set[str] = field(default_factory=set)  # records Klaviyo "refuses"
    to_delete: int = 0  # objects left for delete_batch
    delete_page: int = 2
    fail: dict[str | None, list[BaseException]] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    calls: list[tuple[str | None, tuple[str, ...] | None]] = field(default_factory=list)
    deleted: int = 0

    def __post_init__(self) -> None:
        self.records = sorted(self.records)

    def run_batch(
        self, *, after: str | None, ids: Sequence[str] | None, deadline: Deadline,
        through: str | None = None,
    ) -> BatchResult:
        self.calls.append((after, tuple(ids) if ids is not None else None))
        faults = self.fail.get(after)
        if faults:
            raise faults.pop(0)
        wanted = set(ids) if ids is not None else None
        pool = [r for r in self.records
                if (after is None or r > after) and (wanted is None or r in wanted)
                and (through is None or r <= through)]
        batch = pool[: self.page]
        good = [r for r in batch if r not in self.bad]
        self.sent += good
        return BatchResult(
            read=len(batch), sent=len(good), failed=len(batch) - len(good),
            errors=[RecordError(ct_id=r, status=400, code="invalid", pointer="/data/x")
                    for r in batch if r in self.bad],
            cursor=batch[-1] if batch else after, done=len(pool) <= self.page,
        )

    def delete_batch(self, *, deadline: Deadline) -> BatchResult:
        self.calls.append(("<delete>", None))
        n = min(self.delete_page, self.to_delete)
        self.to_delete -= n
        self.deleted += n
        return BatchResult(sent=n, done=self.to_delete == 0)


class ListQueue:
    """Tasks published go to a list; `fail_next` makes the next publishes raise."""

    def __init__(self) -> None:
        self.tasks: list[PageTask] = []
        self.fail_next = 0

    def publish(self, task: PageTask) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("publish failed")
        self.tasks.append(task)

    def pop(self) -> PageTask:
        return self.tasks.pop(0)


class ConfigOverrides(TypedDict, total=False):
    """RunnerConfig's fields, any of which a test may set."""

    batch_deadline_seconds: float
    lease_seconds: float
    max_batch_attempts: int
    max_errors: int
    partitions: Mapping[str, int]
    klaviyo_share: float


def make_runner(
    store: JobStore,
    exporters: Mapping[str, Exporter] | Callable[[Kind], Exporter],
    *,
    clock: Clock | None = None,
    queue: ListQueue | None = None,
    **config: Unpack[ConfigOverrides],
) -> Runner:
    factory = exporters.__getitem__ if isinstance(exporters, Mapping) else exporters
    # Short batches and leases for tests; `config` overrides any RunnerConfig field.
    defaults = RunnerConfig(batch_deadline_seconds=5.0, lease_seconds=60.0)
    return Runner(store, queue or ListQueue(), factory,
                  config=dataclasses.replace(defaults, **config),
                  clock=clock or Clock(), worker_id="test-worker")


def job_of(runner: Runner, job_id: str) -> Job:
    """The job, which the test knows exists."""
    job = runner.job(job_id)
    assert job is not None, job_id
    return job


def drain(runner: Runner, *, limit: int = 1000) -> list[TaskResult]:
    """Run queued tasks (a ListQueue) until none is left; returns the outcomes."""
    queue = runner.queue
    assert isinstance(queue, ListQueue)
    outcomes: list[TaskResult] = []
    while queue.tasks and limit:
        outcomes.append(runner.run_task(queue.pop()))
        limit -= 1
    return outcomes


def lock_of(store: JobStore, kind: Kind) -> Lock:
    """The kind's lock, which the test knows exists (a job of the kind was created)."""
    return known(store.get_lock(kind), kind)


def queue_of(runner: Runner) -> ListQueue:
    """The runner's task queue as the ListQueue make_runner gave it (tests pop and inspect it)."""
    queue = runner.queue
    assert isinstance(queue, ListQueue), queue
    return queue
