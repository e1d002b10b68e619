"""The job runner over the embedded store with an in-test exporter: the task chain, redelivery,
crashes between steps, stop, failures, deleteAll and local mode's in-process queue."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from shared.bulk.base import BatchResult
from shared.bulk.runner import EnqueueError, Runner, build_runner, select_backend
from shared.bulk.tasks import LocalTaskQueue, PageTask
from shared.config import Settings, load_settings
from shared.errors import CommercetoolsError, ConfigError, KlaviyoError
from shared.state import Conflict, JobStatus, MemoryStore
from shared.state.jobs import LEASE_EXPIRED
from tests.bulk_helpers import (
    Clock,
    ListExporter,
    drain,
    job_of,
    lock_of,
    make_runner,
    queue_of,
)
from tests.checks import known

RECORDS = [f"c{i:02d}" for i in range(10)]


@pytest.fixture
def exporter() -> ListExporter:
    return ListExporter("customers", RECORDS, page=3)


@pytest.fixture
def runner(exporter: ListExporter) -> Runner:
    return make_runner(MemoryStore(), {"customers": exporter})


def test_pages_through_every_batch_once(runner: Runner, exporter: ListExporter) -> None:
    job = runner.start("customers")
    assert drain(runner) == ["saved"] * 4
    done = job_of(runner, job.id)
    assert done.status == JobStatus.COMPLETED and done.seq == 4 and done.cursor == "c09"
    assert done.counts.read == done.counts.sent == 10
    assert exporter.sent == RECORDS
    assert [after for after, _ in exporter.calls] == [None, "c02", "c05", "c08"]
    assert not lock_of(runner.store, "customers").held


def test_redelivered_task_is_a_no_op(runner: Runner, exporter: ListExporter) -> None:
    runner.start("customers")
    first = queue_of(runner).pop()
    assert runner.run_task(first) == "saved"
    assert runner.run_task(first) == "duplicate"  # Pub/Sub delivered it twice
    drain(runner)
    assert exporter.sent == RECORDS
    assert known(runner.latest("customers")).counts.sent == 10


def test_worker_killed_between_sending_and_saving(
    runner: Runner, exporter: ListExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = runner.start("customers")
    drain(runner, limit=1)
    task = queue_of(runner).pop()
    real_save = runner.store.save_batch

    def killed(*args: object, **kwargs: object) -> None:
        raise SystemExit("instance killed")  # after the exporter sent the batch

    monkeypatch.setattr(runner.store, "save_batch", killed)
    with pytest.raises(SystemExit):
        runner.run_task(task)
    monkeypatch.setattr(runner.store, "save_batch", real_save)
    assert runner.run_task(task) == "saved"  # redelivery: the same batch again
    drain(runner)
    done = job_of(runner, job.id)
    assert exporter.sent.count("c03") == 2  # resent (idempotent on Klaviyo's side) ...
    assert done.counts.sent == done.counts.read == 10  # ... but counted once
    assert sorted(set(exporter.sent)) == RECORDS  # no gap


def test_lost_next_task_is_requeued_by_the_redelivery(
    runner: Runner, exporter: ListExporter
) -> None:
    job = runner.start("customers")
    task = queue_of(runner).pop()
    queue_of(runner).fail_next = 1  # saved, then publishing fails
    with pytest.raises(RuntimeError):
        runner.run_task(task)
    assert job_of(runner, job.id).seq == 1 and not queue_of(runner).tasks
    assert runner.run_task(task) == "requeued-next"  # the redelivery heals the chain
    assert runner.run_task(task) == "duplicate"  # and only once
    drain(runner)
    assert job_of(runner, job.id).status == JobStatus.COMPLETED and exporter.sent == RECORDS


def test_stop_mid_job(runner: Runner, exporter: ListExporter) -> None:
    job = runner.start("customers")
    drain(runner, limit=2)
    assert known(runner.stop("customers")).status == JobStatus.STOPPING
    assert drain(runner) == ["stopped"]
    stopped = job_of(runner, job.id)
    assert stopped.status == JobStatus.STOPPED and stopped.cursor == "c05"
    assert exporter.sent == RECORDS[:6]
    assert known(runner.stop("customers")).status == JobStatus.STOPPED  # reported, nothing changed
    runner.start("customers")  # the kind is free again


def test_stop_before_the_first_batch(runner: Runner, exporter: ListExporter) -> None:
    runner.start("customers")
    runner.stop("customers")
    assert drain(runner) == ["stopped"] and exporter.calls == []


def test_conflict_and_enqueue_failure(runner: Runner) -> None:
    job = runner.start("customers")
    with pytest.raises(Conflict) as conflict:
        runner.start("customers")
    assert conflict.value.job_id == job.id
    queue_of(runner).fail_next = 1
    with pytest.raises(EnqueueError) as failed:
        runner.start("orders")
    assert failed.value.job.status == JobStatus.FAILED
    assert not lock_of(runner.store, "orders").held


def test_retryable_failure_is_redelivered_then_fails_the_job(exporter: ListExporter) -> None:
    runner = make_runner(MemoryStore(), {"customers": exporter}, max_batch_attempts=3)
    exporter.fail["c02"] = [KlaviyoError("x", status=503), *[KlaviyoError("y", status=429)] * 5]
    job = runner.start("customers")
    drain(runner, limit=1)
    task = queue_of(runner).pop()
    with pytest.raises(KlaviyoError):
        runner.run_task(task)  # raise → Pub/Sub redelivers
    assert job_of(runner, job.id).attempts == 1 and job_of(runner, job.id).errorCode == "http_503"
    with pytest.raises(KlaviyoError):
        runner.run_task(task)
    assert runner.run_task(task) == "failed"  # third attempt: the job gives up (acknowledged)
    failed = job_of(runner, job.id)
    assert failed.status == JobStatus.FAILED and failed.errorCode == "http_429"
    assert failed.reason == "batch 1 failed 3 times" and failed.cursor == "c02"


def test_stopping_job_does_not_retry_a_failing_batch(
    runner: Runner, exporter: ListExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = runner.start("customers")
    task = queue_of(runner).pop()

    def stop_then_fail(**kwargs: object) -> None:
        runner.stop("customers")  # the stop request arrives while the batch is failing
        raise KlaviyoError("x", status=503)

    monkeypatch.setattr(exporter, "run_batch", stop_then_fail)
    assert runner.run_task(task) == "stopped"  # acknowledged: no redelivery needed
    stopped = job_of(runner, job.id)
    assert stopped.status == JobStatus.STOPPED and stopped.cursor is None and stopped.seq == 0


def test_retry_succeeds_within_attempts(runner: Runner, exporter: ListExporter) -> None:
    exporter.fail[None] = [KlaviyoError("x", status=500)]
    job = runner.start("customers")
    task = queue_of(runner).pop()
    with pytest.raises(KlaviyoError):
        runner.run_task(task)
    assert runner.run_task(task) == "saved"
    drain(runner)
    done = job_of(runner, job.id)
    assert done.status == JobStatus.COMPLETED and done.attempts == 0 and exporter.sent == RECORDS
    assert done.errorCode is None


def test_out_of_time_keeps_the_more_specific_error_code(
    runner: Runner, exporter: ListExporter
) -> None:
    from shared.errors import DeadlineExceeded

    exporter.fail[None] = [KlaviyoError("x", status=429, code="throttled"),
                           DeadlineExceeded("no time left for the request")]
    job = runner.start("customers")
    task = queue_of(runner).pop()
    for _ in range(2):
        with pytest.raises((KlaviyoError, DeadlineExceeded)):
            runner.run_task(task)
    assert job_of(runner, job.id).errorCode == "throttled" and job_of(runner, job.id).attempts == 2


@pytest.mark.parametrize("error, code", [
    (KlaviyoError("bad", status=400), "http_400"),
    (KeyError("bug"), "KeyError"),
])
def test_terminal_failure_fails_the_job_at_once(
    runner: Runner, exporter: ListExporter, error: Exception, code: str
) -> None:
    exporter.fail[None] = [error]
    job = runner.start("customers")
    assert drain(runner) == ["failed"]
    failed = job_of(runner, job.id)
    assert failed.status == JobStatus.FAILED and failed.errorCode == code
    assert not lock_of(runner.store, "customers").held


@pytest.mark.parametrize("error, code", [
    (KlaviyoError("bad key", status=401, code="not_authenticated"),
     "not_authenticated: fix KLAVIYO_API_KEY"),
    (CommercetoolsError("scope", status=403, code="insufficient_scope"),
     "insufficient_scope: fix CTP_CLIENT_ID/CTP_CLIENT_SECRET/CTP_SCOPES"),
    (CommercetoolsError("token", status=400, code="invalid_scope"),
     "invalid_scope: fix CTP_CLIENT_ID/CTP_CLIENT_SECRET/CTP_SCOPES"),
])
def test_refused_credentials_retry_the_batch_and_name_the_setting(
    runner: Runner, exporter: ListExporter, error: Exception, code: str
) -> None:
    # A rotated key is an outage, not a bad batch: the task is delivered again (the key may be
    # fixed by then) and the job's status says which setting to fix; the job goes on afterwards.
    exporter.fail[None] = [error]
    job = runner.start("customers")
    task = queue_of(runner).pop()
    with pytest.raises(type(error)):
        runner.run_task(task)
    waiting = job_of(runner, job.id)
    assert waiting.status == JobStatus.RUNNING and waiting.errorCode == code
    assert waiting.attempts == 1 and lock_of(runner.store, "customers").held
    assert runner.run_task(task) == "saved"
    assert drain(runner)[-1] == "saved" and job_of(runner, job.id).status == JobStatus.COMPLETED


def test_batch_without_progress_fails_instead_of_looping(
    runner: Runner, exporter: ListExporter
) -> None:
    exporter.page = 0  # returns no records, cursor unchanged, not done
    job = runner.start("customers")
    assert drain(runner) == ["failed"]
    assert job_of(runner, job.id).errorCode == "no_progress"


def test_partial_ids_reach_the_exporter(runner: Runner, exporter: ListExporter) -> None:
    job = runner.start("customers", ids=["c07", "c01", "zz-missing"])
    drain(runner)
    assert exporter.sent == ["c01", "c07"]
    assert exporter.calls[0][1] == ("c07", "c01", "zz-missing")
    assert job_of(runner, job.id).idCount == 3


def test_record_errors_are_reported(exporter: ListExporter) -> None:
    exporter.bad = {"c01", "c04", "c05", "c08"}
    runner = make_runner(MemoryStore(), {"customers": exporter}, max_errors=2)
    job = runner.start("customers")
    drain(runner)
    done = job_of(runner, job.id)
    assert done.status == JobStatus.COMPLETED
    assert (done.counts.sent, done.counts.failed, done.errorCount) == (6, 4, 4)
    assert [e.ctId for e in done.errors] == ["c01", "c04"]
    assert done.public()["errors"][0] == {"ctId": "c01", "status": 400, "code": "invalid",
                                          "pointer": "/data/x"}


def test_delete_all_deletes_then_syncs() -> None:
    exporter = ListExporter("categories", ["k1", "k2"], page=5, to_delete=5, delete_page=2)
    runner = make_runner(MemoryStore(), {"categories": exporter})
    job = runner.start("categories", delete_all=True)
    assert drain(runner) == ["saved"] * 4
    done = job_of(runner, job.id)
    assert exporter.calls == [("<delete>", None)] * 3 + [(None, None)]
    assert done.status == JobStatus.COMPLETED
    assert (done.counts.deleted, done.counts.sent) == (5, 2)


def test_expired_lease_takeover_ignores_the_dead_jobs_tasks(exporter: ListExporter) -> None:
    clock = Clock()
    runner = make_runner(MemoryStore(), {"customers": exporter}, clock=clock, lease_seconds=30)
    dead = runner.start("customers")
    drain(runner, limit=1)
    stale = queue_of(runner).pop()  # its worker "crashed"
    with pytest.raises(Conflict):
        runner.start("customers")
    clock.advance(31)
    fresh = runner.start("customers")
    assert job_of(runner, dead.id).status == JobStatus.FAILED
    assert job_of(runner, dead.id).reason == LEASE_EXPIRED
    calls = len(exporter.calls)
    assert runner.run_task(stale) == "ended" and len(exporter.calls) == calls
    drain(runner)
    assert job_of(runner, fresh.id).status == JobStatus.COMPLETED


def test_task_for_unknown_job_is_acknowledged(runner: Runner) -> None:
    task = PageTask(jobId="nope", kind="customers", seq=0)
    assert runner.run_task(task) == "unknown-job"


def test_page_task_round_trip() -> None:
    task = PageTask(jobId="abc", kind="orders", phase="syncing", seq=3, cursor="x\"y")
    assert PageTask.decode(task.encode()) == task
    from shared.errors import MessageError

    for bad in (b"{", b"[]", b'{"jobId": "a/b", "kind": "orders", "seq": 0}',
                b'{"jobId": "a", "kind": "carts", "seq": 0}'):
        with pytest.raises(MessageError):
            PageTask.decode(bad)


# ---- local mode ------------------------------------------------------------------------------


def test_local_queue_runs_the_chain_and_redelivers_failures(exporter: ListExporter) -> None:
    exporter.fail["c05"] = [KlaviyoError("x", status=503)]
    queue = LocalTaskQueue(first_delay=0.01)
    runner = make_runner(MemoryStore(), {"customers": exporter})
    runner.queue = queue
    queue.set_handler(runner.run_task)
    job = runner.start("customers")
    assert queue.wait_idle(10)
    done = job_of(runner, job.id)
    assert done.status == JobStatus.COMPLETED and exporter.sent == RECORDS
    queue.close()


def _settings(**env: str) -> Settings:
    base = {"ctp_project_key": "p", "ctp_client_id": "c", "ctp_client_secret": "s",
            "ctp_api_url": "http://127.0.0.1:1", "ctp_auth_url": "http://127.0.0.1:1",
            "klaviyo_api_key": "k", "google_cloud_project": None,
            "firestore_emulator_host": None, "pubsub_emulator_host": None}
    return load_settings(**{**base, **env})


@pytest.mark.parametrize("env, backend", [
    ({}, "local"),
    ({"google_cloud_project": "proj"}, "gcp"),
    ({"google_cloud_project": "proj", "bulk_backend": "local"}, "local"),
    ({"google_cloud_project": "proj", "firestore_emulator_host": "127.0.0.1:1"}, "gcp"),
])
def test_backend_selection(
    env: dict[str, str], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("K_SERVICE", raising=False)
    assert select_backend(_settings(**env)) == backend


def test_backend_needs_a_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("K_SERVICE", raising=False)
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        select_backend(_settings(pubsub_emulator_host="127.0.0.1:1"))
    monkeypatch.setenv("K_SERVICE", "bulk")  # on Cloud Functions, never silently embedded
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        select_backend(_settings())


def test_build_runner_local_uses_the_state_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("K_SERVICE", raising=False)
    path = tmp_path / "s.json"
    runner = build_runner(_settings(bulk_local_state_file=str(path)),
                          exporters=lambda kind: ListExporter(kind, ["a"]))
    assert isinstance(runner.queue, LocalTaskQueue) and isinstance(runner.store, MemoryStore)
    job = runner.start("customers")
    assert runner.queue.wait_idle(10)
    assert known(MemoryStore(path).get_job(job.id)).status == JobStatus.COMPLETED
    assert os.path.exists(path)


def test_batches_run_with_the_cyclic_gc_paused() -> None:
    """A batch keeps what it read alive until it sends it; the cyclic GC would walk all of it
    again and again for nothing (see runner._GcPause). It is back on after every batch, also
    after one that failed."""
    import gc

    seen: list[bool] = []

    class Probe(ListExporter):
        def run_batch(self, **kwargs: Any) -> BatchResult:  # whatever the runner passes
            seen.append(gc.isenabled())
            return super().run_batch(**kwargs)

    exporter = Probe("customers", RECORDS, page=3,
                     fail={"c05": [KlaviyoError("boom", status=400, retryable=False)]})
    runner = make_runner(MemoryStore(), {"customers": exporter})
    assert gc.isenabled()
    runner.start("customers")
    assert drain(runner) == ["saved", "saved", "failed"]
    assert seen == [False, False, False] and gc.isenabled()


def test_gc_pause_lasts_until_the_last_concurrent_batch_ends() -> None:
    import gc

    from shared.bulk.runner import _gc_paused

    with _gc_paused():
        with _gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()  # paused by someone else: left as it was
    try:
        with _gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
