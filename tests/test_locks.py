"""`python -m deploy.locks`: show and force-release the bulk locks (Firestore emulator + local
file)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from deploy import locks
from shared.state import FirestoreStore, MemoryStore
from shared.state.jobs import JobStatus, utcnow
from tests.emulators import PROJECT

LEASE = timedelta(minutes=15)


@pytest.fixture
def firestore_prefix(firestore_db: Any) -> tuple[FirestoreStore, list[str]]:
    """A Firestore store with its own collections, and the CLI arguments that reach it."""
    prefix = f"t{uuid.uuid4().hex[:6]}_"
    return FirestoreStore(firestore_db, prefix=prefix), ["--project", PROJECT, "--prefix", prefix]


@pytest.mark.emulator
def test_show_and_release_on_firestore(
    firestore_prefix: tuple[FirestoreStore, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    store, where = firestore_prefix
    job = store.create("customers", ids=None, delete_all=False, now=utcnow(), lease=LEASE).job

    assert locks.main(["show", *where]) == 0
    out = capsys.readouterr().out
    assert "customers:" in out and f"job {job.id}" in out and "lock:   held" in out
    assert "queued" in out and "orders:\n  lock:   none" in out

    # confirmation refused: nothing changes
    assert locks.main(["release", "customers", *where], ask=lambda prompt: "no") == 1
    assert store.get_lock("customers").held
    assert "not confirmed" in capsys.readouterr().out

    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return "customers"

    assert locks.main(["release", "customers", *where], ask=ask) == 0
    assert job.id in prompts[0]
    lock, ended = store.get_lock("customers"), store.get_job(job.id)
    assert not lock.held
    assert ended.status == JobStatus.FAILED and ended.reason == locks.RELEASE_REASON
    assert "lock released" in capsys.readouterr().out

    # the kind is free again: a new job can start, and a second release has nothing to do
    store.create("customers", ids=None, delete_all=False, now=utcnow(), lease=LEASE)
    assert locks.main(["release", "orders", "--yes", *where]) == 1


def test_release_with_yes_on_the_local_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.json"
    store = MemoryStore(path)
    started = utcnow() - timedelta(hours=2)  # a job whose lease lapsed long ago
    job = store.create("products", ids=None, delete_all=False, now=started, lease=LEASE).job

    assert locks.main(["show", "products", "--local-state", str(path)]) == 0
    out = capsys.readouterr().out
    assert "lease lapsed" in out and "ago" in out

    assert locks.main(["release", "products", "--yes", "--local-state", str(path)],
                      ask=lambda prompt: pytest.fail("--yes must not ask")) == 0
    reloaded = MemoryStore(path)
    lock, released = reloaded.get_lock("products"), reloaded.get_job(job.id)
    assert lock is not None and not lock.held
    assert released is not None and released.reason == "released by operator"


def test_needs_a_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    with pytest.raises(SystemExit, match="GOOGLE_CLOUD_PROJECT"):
        locks.main(["show"])
