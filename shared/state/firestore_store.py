"""The Firestore job store: every state change is one atomic, conditional batch write.

Collections (names start with BULK_COLLECTION_PREFIX, default `bulk_`):
  <prefix>jobs/<jobId>      the Job document (status, counts, cursor, errors, lease mirror)
  <prefix>locks/<kind>      the kind's lock: latest jobId, held, expiresAt (lease), holder
  <prefix>job_ids/<jobId>   the ids of a partial sync ({"ids": [...]}, written once)
No composite index is needed: the latest job of a kind is found through its lock document.

Concurrency is optimistic (compare-and-set), not Firestore's locking transactions: `run(fn)`
reads documents plainly, remembering each one's update time (or absence), and commits `fn`'s
writes as ONE batch whose every write carries a precondition: "still at the update time I read"
(update) or "still absent" (create). If any document changed meanwhile, nothing is written and
`fn` runs again on fresh reads. Every transition writes the documents its decision depends on,
so this is as strict as a transaction. It also holds up under contention: eight starts racing
for one kind's lock cost one round trip each, where locking transactions (on the emulator) can
block one another until they time out.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.bulk.base import Kind
from shared.state.jobs import Job, Lock
from shared.state.store import JobStore

T = TypeVar("T")

MAX_ATTEMPTS = 30
_CONFLICTS = (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound, gexc.Aborted)


class ContentionError(RuntimeError):
    """A state change kept losing to concurrent ones (retryable: the caller may try again)."""


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _doc(model: Job | Lock) -> dict[str, Any]:
    return _plain(model.model_dump(mode="python"))  # datetimes stay Firestore timestamps


@dataclass(frozen=True)
class _Read:
    exists: bool
    update_time: datetime | None


class _OptimisticTxn:
    def __init__(self, store: FirestoreStore) -> None:
        self._store = store
        self.reads: dict[str, _Read] = {}
        self.writes: dict[str, tuple[Any, dict[str, Any]]] = {}

    def _get(self, ref: Any) -> dict[str, Any] | None:
        snap = ref.get()
        self.reads.setdefault(ref.path, _Read(snap.exists, snap.update_time if snap.exists
                                              else None))
        return snap.to_dict() if snap.exists else None

    def lock(self, kind: Kind) -> Lock | None:
        data = self._get(self._store.locks.document(kind))
        return Lock.model_validate(data) if data is not None else None

    def job(self, job_id: str) -> Job | None:
        data = self._get(self._store.jobs.document(job_id))
        return Job.model_validate(data) if data is not None else None

    def put_lock(self, lock: Lock) -> None:
        ref = self._store.locks.document(lock.kind)
        self.writes[ref.path] = (ref, _doc(lock))

    def put_job(self, job: Job) -> None:
        ref = self._store.jobs.document(job.id)
        self.writes[ref.path] = (ref, _doc(job))

    def put_ids(self, job_id: str, ids: list[str]) -> None:
        ref = self._store.ids.document(job_id)
        self.writes[ref.path] = (ref, {"ids": list(ids)})

    def commit(self, client: firestore.Client) -> None:
        batch = client.batch()
        for path, (ref, data) in self.writes.items():
            read = self.reads.get(path)
            if read is None:
                batch.create(ref, data)  # new documents (job ids are fresh uuids)
            elif not read.exists:
                batch.create(ref, data)  # fails if someone created it meanwhile
            else:  # fails if someone changed it meanwhile; replaces every field
                batch.update(ref, data,
                             option=client.write_option(last_update_time=read.update_time))
        batch.commit()


class FirestoreStore(JobStore):
    def __init__(self, client: firestore.Client, *, prefix: str = "bulk_") -> None:
        self.client = client
        self.prefix = prefix
        self.jobs = client.collection(f"{prefix}jobs")
        self.locks = client.collection(f"{prefix}locks")
        self.ids = client.collection(f"{prefix}job_ids")

    @classmethod
    def connect(cls, project: str, *, prefix: str = "bulk_",
                database: str = "(default)") -> FirestoreStore:
        """A store on one database of the project (the emulator when FIRESTORE_EMULATOR_HOST is
        set). Creating the client does no network I/O."""
        return cls(firestore.Client(project=project, database=database), prefix=prefix)

    def __repr__(self) -> str:
        return (f"FirestoreStore(project={self.client.project!r}, "
                f"database={self.client._database!r}, prefix={self.prefix!r})")

    def run(self, fn: Callable[[_OptimisticTxn], T]) -> T:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            txn = _OptimisticTxn(self)
            result = fn(txn)  # exceptions (e.g. Conflict) propagate: nothing was written
            if not txn.writes:
                return result
            try:
                txn.commit(self.client)
                return result
            except _CONFLICTS:
                time.sleep(random.uniform(0, min(0.5, 0.01 * 2 ** attempt)))
        raise ContentionError(f"state change lost {MAX_ATTEMPTS} times to concurrent ones")

    def get_job(self, job_id: str) -> Job | None:
        snap = self.jobs.document(job_id).get()
        return Job.model_validate(snap.to_dict()) if snap.exists else None

    def get_lock(self, kind: Kind) -> Lock | None:
        snap = self.locks.document(kind).get()
        return Lock.model_validate(snap.to_dict()) if snap.exists else None

    def get_ids(self, job_id: str) -> list[str] | None:
        snap = self.ids.document(job_id).get()
        return list((snap.to_dict() or {}).get("ids") or []) if snap.exists else None
