"""The embedded job store for local mode: in memory, optionally kept in a JSON file.

With a file, every transaction runs under an exclusive `flock` and re-reads the file, so the CLI
and a local server on the same machine share jobs and locks (and `python -m bulk status` sees the
last run). Without one, state lives and dies with the process. Thread-safe either way.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from shared.bulk.base import Kind
from shared.state.jobs import Job, Lock
from shared.state.store import JobStore

T = TypeVar("T")

_EMPTY: dict[str, dict[str, Any]] = {"jobs": {}, "locks": {}, "ids": {}}


class _MemoryTxn:
    def __init__(self, state: dict[str, dict[str, Any]]) -> None:
        self._state = state
        self.writes: list[tuple[str, str, Any]] = []

    def lock(self, kind: Kind) -> Lock | None:
        data = self._state["locks"].get(kind)
        return Lock.model_validate(data) if data is not None else None

    def job(self, job_id: str) -> Job | None:
        data = self._state["jobs"].get(job_id)
        return Job.model_validate(data) if data is not None else None

    def put_lock(self, lock: Lock) -> None:
        self.writes.append(("locks", lock.kind, lock.model_dump(mode="json")))

    def put_job(self, job: Job) -> None:
        self.writes.append(("jobs", job.id, job.model_dump(mode="json")))

    def put_ids(self, job_id: str, ids: list[str]) -> None:
        self.writes.append(("ids", job_id, list(ids)))


class MemoryStore(JobStore):
    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else None
        self._mutex = threading.RLock()
        self._state: dict[str, dict[str, Any]] = copy.deepcopy(_EMPTY)

    def __repr__(self) -> str:
        return f"MemoryStore(path={str(self.path) if self.path else None!r})"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            if self.path is None:
                yield
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(f"{self.path}.lock", "a+") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                try:
                    self._load()
                    yield
                finally:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except ValueError as exc:
            raise RuntimeError(f"bulk state file {self.path} is not valid JSON; delete it") from exc
        self._state = {key: dict(data.get(key) or {}) for key in _EMPTY}

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self._state, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, self.path)

    def run(self, fn: Callable[[_MemoryTxn], T]) -> T:
        with self._locked():
            txn = _MemoryTxn(self._state)
            result = fn(txn)  # an exception discards the buffered writes
            if txn.writes:
                for collection, key, value in txn.writes:
                    self._state[collection][key] = value
                self._save()
            return result

    def get_job(self, job_id: str) -> Job | None:
        with self._locked():
            return _MemoryTxn(self._state).job(job_id)

    def get_lock(self, kind: Kind) -> Lock | None:
        with self._locked():
            return _MemoryTxn(self._state).lock(kind)

    def get_ids(self, job_id: str) -> list[str] | None:
        with self._locked():
            ids = self._state["ids"].get(job_id)
            return list(ids) if ids is not None else None
