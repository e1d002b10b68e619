"""Bulk job state and the one-job-per-kind lock (Firestore in the cloud, embedded locally).

`FirestoreStore` is loaded lazily so local mode never imports the Firestore client.
"""

from typing import Any

from shared.state.jobs import (
    LIVE_STATUSES,
    Conflict,
    Counts,
    Created,
    Job,
    JobError,
    JobStatus,
    Lock,
    Phase,
)
from shared.state.memory_store import MemoryStore
from shared.state.store import JobStore

__all__ = [
    "LIVE_STATUSES",
    "Conflict",
    "Counts",
    "Created",
    "FirestoreStore",
    "Job",
    "JobError",
    "JobStatus",
    "JobStore",
    "Lock",
    "MemoryStore",
    "Phase",
]


def __getattr__(name: str) -> Any:
    if name == "FirestoreStore":
        from shared.state.firestore_store import FirestoreStore

        return FirestoreStore
    raise AttributeError(f"module 'shared.state' has no attribute {name!r}")
