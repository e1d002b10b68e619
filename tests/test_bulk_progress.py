"""A job's total (counted once at its start with commercetools' withTotal) and the progress
derived from it: read / total, percentage, rate, ETA."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deploy.demo import shop
from shared.bulk.runner import build_runner
from shared.bulk.tasks import LocalTaskQueue
from shared.config import load_settings
from shared.state.jobs import Counts, Job, JobStatus, progress

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _job(**fields: Any) -> Job:
    return Job(id="j", kind="customers", createdAt=T0, updatedAt=T0, **fields)


def test_progress_of_a_running_job() -> None:
    job = _job(status=JobStatus.RUNNING, total=10_000, startedAt=T0,
               counts=Counts(read=2_500, sent=2_400, skipped=100))
    p = progress(job, T0 + timedelta(seconds=50))
    assert p == {"read": 2_500, "total": 10_000, "percent": 25.0, "ratePerSecond": 50.0,
                 "elapsedSeconds": 50.0, "etaSeconds": 150.0}


def test_progress_without_a_total_and_when_done() -> None:
    running = _job(status=JobStatus.RUNNING, startedAt=T0, counts=Counts(read=10))
    p = progress(running, T0 + timedelta(seconds=5))
    assert p["total"] is None and p["percent"] is None and p["etaSeconds"] is None
    assert p["ratePerSecond"] == 2.0
    done = _job(status=JobStatus.COMPLETED, total=0, startedAt=T0, finishedAt=T0)
    assert progress(done, T0 + timedelta(hours=1))["percent"] == 100.0
    assert progress(done, T0 + timedelta(hours=1))["elapsedSeconds"] == 0.0  # until finishedAt


@pytest.fixture
def runner_for(
    ct: Any, ct_env: dict[str, str], klaviyo: Any, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], Any]:
    from shared.klaviyo import limiter

    monkeypatch.setattr(limiter, "_shared", None)
    klaviyo.job_status_sequence = []
    variables = {k.lower(): v for k, v in ct_env.items()}

    def make() -> Any:
        settings = load_settings(**variables, klaviyo_api_key=klaviyo.api_key,
                                 klaviyo_base_url=klaviyo.url, bulk_local_state_file="",
                                 bulk_backend="local", bulk_page_size=5)
        return build_runner(settings)

    return make


def _run(runner: Any, kind: str, **options: Any) -> Job:
    job = runner.start(kind, **options)
    assert isinstance(runner.queue, LocalTaskQueue)
    assert runner.queue.wait_idle(timeout=30)
    return runner.job(job.id)


def test_total_is_counted_once_with_the_exporters_query(ct: Any, runner_for: Any) -> None:
    for i in range(12):
        ct.add("customers", shop.customer(i))
    for p in range(3):
        ct.add("products", shop.product(p))
    unpublished = shop.product(3)
    unpublished["masterData"]["published"] = False
    ct.add("products", unpublished)
    runner = runner_for()

    job = _run(runner, "customers")
    assert job.status == JobStatus.COMPLETED and job.total == 12 and job.counts.read == 12
    counts = [r for r in ct.api_requests("customers") if r.param("withTotal") == "true"]
    assert len(counts) == 1 and counts[0].param("limit") == "1"  # once, before batch 0 of 3

    job = _run(runner, "products")
    assert job.total == 3 == job.counts.read  # published only, as the exporter reads
    counted = [r for r in ct.api_requests("products") if r.param("withTotal") == "true"]
    assert counted[0].query["where"] == ["masterData(published = true)"]


def test_partial_sync_total_is_its_ids_and_a_failed_count_only_loses_the_total(
    ct: Any, runner_for: Any
) -> None:
    ids = [ct.add("customers", shop.customer(i))["id"] for i in range(4)]
    runner = runner_for()
    job = _run(runner, "customers", ids=ids[:3])
    assert job.total == 3 and job.counts.read == 3
    assert not [r for r in ct.api_requests("customers") if r.param("withTotal") == "true"]

    ct.inject(400, times=1)  # the count is the job's first commercetools request
    job = _run(runner, "customers")
    assert job.status == JobStatus.COMPLETED and job.total is None and job.counts.read == 4
