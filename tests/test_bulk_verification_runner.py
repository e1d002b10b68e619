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


# ---- what a finished Klaviyo job says ---------------------------------------------------------


class StubKlaviyo:
    """Answers for the two reads a check makes (the fake's jobs are always complete)."""

    def __init__(self, attributes: dict[str, Any], errors: list[dict[str, Any]]) -> None:
        self.attributes = attributes
        self.errors = errors
        self.error_pages: list[int] = []

    def get_profile_bulk_import_job(self, job_id: str, **_: Any) -> dict[str, Any]:
        return self.attributes

    def iter_profile_bulk_import_errors(self, job_id: str, *, page_size: int,
                                        **_: Any) -> Any:
        self.error_pages.append(page_size)
        yield from self.errors


def check_one(stub: StubKlaviyo, records: int = 10, room: int = 100) -> Any:
    from shared.deadline import Deadline
    from shared.state.jobs import KlaviyoJobRef

    verifier = Verifier(stub, poll=FAST)  # type: ignore[arg-type]
    return verifier.check([KlaviyoJobRef(id="k1", records=records)],
                          deadline=Deadline.after(5), wait_for=0, strict=True, room=room)


def payload(ct_id: str | None) -> dict[str, Any]:
    profile = {"email": "someone@example.com", "phone_number": "+11005550100"}
    return {"code": "invalid", "title": "Invalid input", "detail": "bad phone",
            "source": {"pointer": "/data/attributes/profiles/data/3/attributes/phone_number"},
            "original_payload": {**profile, **({"external_id": ct_id} if ct_id else {})}}


def test_a_cancelled_job_counts_what_it_did_not_complete() -> None:
    stub = StubKlaviyo({"status": "cancelled", "total_count": 10, "completed_count": 6,
                        "failed_count": 1}, [payload("c-3")])
    found = check_one(stub)
    assert found.checked == ["k1"] and found.failed == 4  # 1 refused + 3 never processed
    assert [(e.ctId, e.code) for e in found.errors] == [("c-3", "invalid"),
                                                        ("unknown", "klaviyo_job_cancelled")]


def test_import_errors_are_read_only_as_far_as_the_error_list_has_room() -> None:
    stub = StubKlaviyo({"status": "complete", "total_count": 10, "completed_count": 5,
                        "failed_count": 5}, [payload(f"c-{i}") for i in range(5)])
    found = check_one(stub, room=2)
    assert found.failed == 5 and [e.ctId for e in found.errors] == ["c-0", "c-1"]
    assert stub.error_pages == [2]
    # An error without the profile's external_id is counted, reported as "unknown".
    found = check_one(StubKlaviyo({"status": "complete", "failed_count": 1}, [payload(None)]))
    assert found.failed == 1 and found.errors[0].ctId == "unknown"
    # Nothing of the payload but the id is kept.
    assert "example.com" not in repr(found) and "+1100" not in repr(found)


def test_a_job_klaviyo_does_not_know_counts_all_its_records(
    klaviyo: Any, klaviyo_client: Any,
) -> None:
    from shared.deadline import Deadline
    from shared.state.jobs import KlaviyoJobRef

    verifier = Verifier(klaviyo_client, poll=FAST)
    found = verifier.check([KlaviyoJobRef(id="no-such-job", records=7)],
                           deadline=Deadline.after(5), wait_for=0, strict=True, room=10)
    assert found.checked == ["no-such-job"] and found.failed == 7
    assert found.errors[0].code == "klaviyo_job_unreadable"
