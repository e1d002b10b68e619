"""Page tasks: one message per batch of a bulk job, and the queues that carry them.

In the cloud, tasks are Pub/Sub messages on BULK_TASKS_TOPIC, delivered to
`bulk/main.py:run_page_task` (at least once: a task whose batch is already saved is a no-op).
Locally, `LocalTaskQueue` runs them on a worker thread in the same process, redelivering a task
whose handler raised, as Pub/Sub would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.bulk.base import Kind
from shared.errors import MessageError, RetryableError
from shared.log import get_logger
from shared.state.jobs import Phase

log = get_logger("bulk.tasks")

JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

# What running one page task did (`JobRunner.run_task`; for logs and tests). All are
# acknowledged: a task that must be delivered again raises instead.
#   saved          the batch ran and its result was saved (the next task queued if the job goes on)
#   duplicate      the batch was already done (a redelivery), or the job moved on meanwhile
#   requeued-next  already done, but its next task may never have been queued: queued now
#   stopped        the job was asked to stop; it is stopped now
#   ended          the job (or the partition's job) had already ended
#   failed         the batch failed terminally, made no progress, or ran out of attempts
#   unknown-job    no such job (of that kind)
TaskResult = Literal["saved", "duplicate", "requeued-next", "stopped", "ended", "failed",
                     "unknown-job"]


class PageTask(BaseModel):
    """Run batch number `seq` of job `jobId`, starting after `cursor` in `phase`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    jobId: str = Field(pattern=JOB_ID_PATTERN)
    kind: Kind
    phase: Phase = "syncing"
    seq: int = Field(ge=0)
    cursor: str | None = None

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, data: bytes) -> PageTask:
        try:
            return cls.model_validate(json.loads(data))
        except (ValueError, UnicodeDecodeError, ValidationError) as exc:
            raise MessageError(f"not a bulk page task: {type(exc).__name__}") from None

    def log_fields(self) -> dict[str, Any]:
        return {"jobId": self.jobId, "kind": self.kind, "phase": self.phase, "seq": self.seq,
                "cursor": self.cursor}


class TaskQueue(Protocol):
    def publish(self, task: PageTask) -> None:
        """Queue the task (raises when it could not be queued)."""
        ...


def topic_path(project: str, topic: str) -> str:
    return topic if topic.startswith("projects/") else f"projects/{project}/topics/{topic}"


class PubsubTaskQueue:
    """Publishes tasks to a Pub/Sub topic and waits for the server's acknowledgement."""

    def __init__(self, topic: str, *, publisher: Any = None, timeout: float = 30.0) -> None:
        self.topic = topic
        self.timeout = timeout
        self._publisher = publisher
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"PubsubTaskQueue({self.topic!r})"

    @property
    def publisher(self) -> Any:
        with self._mutex:
            if self._publisher is None:
                from google.cloud.pubsub_v1 import PublisherClient

                self._publisher = PublisherClient()
            return self._publisher

    def publish(self, task: PageTask) -> None:
        try:
            future = self.publisher.publish(
                self.topic, task.encode(), jobId=task.jobId, kind=task.kind, seq=str(task.seq)
            )
            future.result(timeout=self.timeout)
        except Exception as exc:  # google.api_core errors, timeouts
            raise RetryableError(f"could not publish the bulk task: {type(exc).__name__}") from exc


class LocalTaskQueue:
    """An in-process queue with one worker thread (local mode).

    A handler that raises gets the task again after a growing delay (Pub/Sub-like), up to
    `max_attempts` deliveries. `wait_idle()` returns once nothing is queued, running or waiting
    for redelivery.
    """

    def __init__(
        self,
        handler: Callable[[PageTask], Any] | None = None,
        *,
        max_attempts: int = 20,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
    ) -> None:
        self._handler = handler
        self.max_attempts = max_attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._cond = threading.Condition()
        self._ready: list[tuple[PageTask, int]] = []
        self._outstanding = 0  # queued + running + waiting for redelivery
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return "LocalTaskQueue()"

    def set_handler(self, handler: Callable[[PageTask], Any]) -> None:
        self._handler = handler

    def publish(self, task: PageTask) -> None:
        with self._cond:
            if self._closed:
                raise RetryableError("the local task queue is closed")
            self._outstanding += 1
            self._ready.append((task, 1))
            self._ensure_worker()
            self._cond.notify_all()

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="bulk-local-tasks",
                                            daemon=True)
            self._thread.start()

    def _redeliver(self, task: PageTask, attempt: int) -> None:
        with self._cond:
            if self._closed:
                self._outstanding -= 1
            else:
                self._ready.append((task, attempt))
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                task, attempt = self._ready.pop(0)
            retry = False
            try:
                if self._handler is None:
                    raise RuntimeError("no handler for the local task queue")
                self._handler(task)
            except Exception as exc:
                retry = attempt < self.max_attempts
                log.warning("bulk task failed" + (", redelivering" if retry else ", dropped"),
                            attempt=attempt, error=type(exc).__name__, **task.log_fields())
            if retry:
                delay = min(self.max_delay, self.first_delay * 2 ** (attempt - 1))
                timer = threading.Timer(delay, self._redeliver, args=(task, attempt + 1))
                timer.daemon = True
                timer.start()
            else:
                with self._cond:
                    self._outstanding -= 1
                    self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._outstanding == 0, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._outstanding -= len(self._ready)
            self._ready.clear()
            self._cond.notify_all()
