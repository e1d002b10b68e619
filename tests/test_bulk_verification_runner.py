"""Klaviyo-side verification inside one job's chain of page tasks (the runner, the embedded
store, the real customers exporter and Klaviyo client against the fakes): checked as the batches
go, at most `max_pending` unchecked Klaviyo jobs per document, nothing completed early."""

from __future__ import annotations

from typing import Any

from shared.bulk.exporters.customers import CustomersExporter
from shared.bulk.verification import Verifier
from shared.klaviyo.catalog_jobs import PollPolicy
from shared.state.jobs import JobStatus
from shared.state.memory_store import MemoryStore
from tests.bulk_helpers import drain, job_of, make_runner

FAST = PollPolicy(first=0.01, factor=1.0, cap=0.01)


def add(ct: Any, n: int, *, refused: tuple[int, ...] = ()) -> list[str]:
    ids = []
    for i in range(n):
        doc: dict[str, Any] = {"id": f"c-{i:03d}", "email": f"c{i}@example.com", "addresses": []}
        if i in refused:  # well formed, impossible (area code 100): refused inside the job
            doc["addresses"] = [{"id": "a", "country": "US", "mobile": "+11005550100"}]
        ids.append(ct.add("customers", doc)["id"])
    return ids


def runner_for(ct_client: Any, klaviyo_client: Any, **verifier: Any) -> Any:
    exporter = CustomersExporter(ct_client, klaviyo_client, page_size=2, batch_size=2)
    runner = make_runner(MemoryStore(), {"customers": exporter})
    runner.verifier = Verifier(klaviyo_client, poll=FAST, **verifier)
    return runner


def test_checked_as_the_batches_go(ct: Any, ct_client: Any, klaviyo: Any,
                                   klaviyo_client: Any) -> None:
    add(ct, 7, refused=(1, 4))
    klaviyo.job_status_sequence = []  # each Klaviyo job is done by the time it is looked at
    runner = runner_for(ct_client, klaviyo_client, wait_seconds=0.05)
    job = runner.start("customers")
    drain(runner)
    job = job_of(runner, job.id)
    assert job.status == JobStatus.COMPLETED and job.seq == 4  # four batches, no extra task
    assert (job.counts.read, job.counts.sent, job.counts.failed) == (7, 5, 2)
    assert job.klaviyoChecked == 4 and job.klaviyoFailed == 2
    assert sorted(e.ctId for e in job.errors) == ["c-001", "c-004"]
    # Each batch looked at the jobs of the batches before it (while reading), so the last one
    # had only its own left: one GET per Klaviyo job, plus one import-errors page per refusal.
    gets = klaviyo.requests_to("GET", "/api/profile-bulk-import-jobs/")
    assert len([g for g in gets if g.path.endswith("/import-errors")]) == 2
    assert len(gets) == 4 + 2
    assert all(g.query.get("page[size]") for g in gets if g.path.endswith("/import-errors"))


def test_too_many_unchecked_jobs_hold_the_next_batch_back(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any,
) -> None:
    add(ct, 8, refused=(6,))
    klaviyo.job_status_sequence = ["processing"] * 10_000  # Klaviyo is far behind
    runner = runner_for(ct_client, klaviyo_client, wait_seconds=0.05, max_pending=2)
    job = runner.start("customers")
    for _ in range(6):
        runner.run_task(runner.queue.pop())
    job = job_of(runner, job.id)
    # Two Klaviyo jobs unchecked: the document holds no more, and nothing more is sent.
    assert job.live and len(job.klaviyoJobs) == 2 and job.counts.read == 4
    assert len(klaviyo.requests_to("POST", "/api/profile-bulk-import-jobs")) == 2
    klaviyo.job_status_sequence = []  # Klaviyo catches up: the chain goes on
    drain(runner)
    job = job_of(runner, job.id)
    assert job.status == JobStatus.COMPLETED and job.klaviyoPending == 0
    assert (job.counts.read, job.counts.sent, job.klaviyoFailed) == (8, 7, 1)
    assert [e.ctId for e in job.errors] == ["c-006"]
    assert len(klaviyo.requests_to("POST", "/api/profile-bulk-import-jobs")) == 4


def test_stopping_while_verifying(ct: Any, ct_client: Any, klaviyo: Any,
                                  klaviyo_client: Any) -> None:
    add(ct, 2)
    klaviyo.job_status_sequence = ["processing"] * 10_000
    runner = runner_for(ct_client, klaviyo_client, wait_seconds=0.02)
    job = runner.start("customers")
    for _ in range(2):
        runner.run_task(runner.queue.pop())
    assert job_of(runner, job.id).phase == "verifying"
    runner.stop("customers")
    drain(runner)
    job = job_of(runner, job.id)
    assert job.status == JobStatus.STOPPED and job.klaviyoPending == 1  # never "completed"
