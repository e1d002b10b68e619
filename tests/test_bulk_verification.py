"""Klaviyo-side verification (shared/bulk/verification.py), end to end: `bulk/main.py` under
functions-framework, job state in the Firestore emulator, page tasks over the Pub/Sub emulator,
the real exporters against the commercetools fake and the Klaviyo fake (which, as Klaviyo does,
accepts a profile import job and refuses a profile with an impossible phone number only while
processing it, listing it in the job's import errors)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.bulk.base import BatchResult
from shared.klaviyo.batches import RecordError
from shared.klaviyo.catalog_jobs import CatalogJob, CatalogRecord, job_outcome
from shared.state.jobs import Job, JobStatus, apply_batch, utcnow
from tests.test_bulk_e2e import Bulk, add_customers, local_env, make_bulk, profile_external_ids

__all__ = ["local_env", "make_bulk"]  # the fixtures, shared with test_bulk_e2e

# Well formed (E.164), but no North American number has area code 100: Klaviyo refuses it.
IMPOSSIBLE_PHONE = "+1 100 555 0100"
JOB_GETS = "/api/profile-bulk-import-jobs/"


def add_refused_customer(ct: Any, ct_id: str = "cust-002x") -> str:
    ct.add("customers", {"id": ct_id, "email": "refused@example.com", "firstName": "Ref",
                         "lastName": "Used",
                         "addresses": [{"id": "a1", "country": "US", "mobile": IMPOSSIBLE_PHONE}]})
    return ct_id


def status_view(bulk: Bulk, path: str = "/sync/customers") -> dict[str, Any]:
    status, view = bulk.get(path)
    assert status == 200
    return view


@pytest.mark.emulator
def test_profile_refused_inside_the_klaviyo_job_is_counted_with_its_ct_id(
    make_bulk: Callable[..., Bulk], ct: Any, klaviyo: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    good = add_customers(ct, 4)
    refused = add_refused_customer(ct)
    bulk = make_bulk()
    job = bulk.pump(bulk.post("/sync/customers")[1]["jobId"])
    assert job.status == JobStatus.COMPLETED, job
    # Klaviyo accepted all five into its job, then refused one: sent says what got in.
    assert job.counts.read == 5 and job.counts.sent == 4 and job.counts.failed == 1
    assert job.klaviyoFailed == 1 and job.klaviyoChecked == 1 and job.klaviyoPending == 0
    assert profile_external_ids(klaviyo) == good
    [error] = job.errors
    assert error.ctId == refused and error.code == "invalid"
    assert error.pointer is not None and error.pointer.endswith("/phone_number")
    [post] = klaviyo.requests_to("POST", "/api/profile-bulk-import-jobs")
    assert error.klaviyoJobId and error.klaviyoJobId in {j["id"] for j in klaviyo.jobs.values()}
    assert klaviyo.requests_to("GET", f"{JOB_GETS}{error.klaviyoJobId}/import-errors")

    view = status_view(bulk)
    assert view["status"] == "completed" and view["klaviyoFailed"] == 1
    assert view["errors"][0]["ctId"] == refused and view["errorCount"] == 1
    assert "klaviyoJobs" not in view  # the bookkeeping stays in the document
    # The import error echoes the whole profile; none of it reaches the status or the logs.
    assert "refused@example.com" not in json.dumps(view)
    logged = json.dumps([r.__dict__ for r in caplog.records], default=str)
    assert "Klaviyo refused records" in logged and "@example.com" not in logged
    assert bulk.deliveries == [200]  # checked by the last batch's task itself


@pytest.mark.emulator
def test_a_job_waits_while_klaviyo_is_still_processing(
    make_bulk: Callable[..., Bulk], ct: Any, klaviyo: Any,
) -> None:
    add_customers(ct, 3)
    refused = add_refused_customer(ct)
    bulk = make_bulk(BULK_VERIFY_WAIT_SECONDS="0.05")
    klaviyo.job_status_sequence = ["processing"] * 10_000  # Klaviyo is slow today
    job_id = bulk.post("/sync/customers")[1]["jobId"]
    job = bulk.pump(job_id, until=lambda job: job.phase == "verifying" and job.seq >= 3)
    # Every record was sent, but Klaviyo has not said what became of them: not completed.
    assert job.status == JobStatus.RUNNING and job.klaviyoPending == 1 and job.counts.sent == 4
    view = status_view(bulk)
    assert view["status"] == "running" and view["phase"] == "verifying"
    assert view["klaviyoPending"] == 1 and view["finishedAt"] is None
    assert bulk.post("/sync/customers")[0] == 409  # the lock is held meanwhile

    klaviyo.job_status_sequence = []  # Klaviyo catches up
    job = bulk.pump(job_id)
    assert job.status == JobStatus.COMPLETED and job.klaviyoPending == 0
    assert job.counts.sent == 3 and job.klaviyoFailed == 1 and job.errors[0].ctId == refused


@pytest.mark.emulator
def test_an_unreadable_klaviyo_job_is_retried_not_taken_for_success(
    make_bulk: Callable[..., Bulk], ct: Any, klaviyo: Any,
) -> None:
    add_customers(ct, 2)
    refused = add_refused_customer(ct)
    bulk = make_bulk(BULK_BATCH_DEADLINE_SECONDS="2", BULK_MAX_BATCH_ATTEMPTS="3",
                     BULK_VERIFY_WAIT_SECONDS="0.2")
    # Klaviyo answers 503 to every read of the job: it cannot be checked.
    klaviyo.inject(503, times=10_000, path=JOB_GETS, method="GET")
    job = bulk.pump(bulk.post("/sync/customers")[1]["jobId"], timeout=60)
    assert job.status == JobStatus.FAILED and job.errorCode, job
    assert job.phase == "verifying" and job.klaviyoPending == 1
    assert 500 in bulk.deliveries  # the verifying task was redelivered, then gave up
    assert len(klaviyo.requests_to("GET", JOB_GETS)) > 1

    # A short outage (a 429 with Retry-After, then 5xx) only delays the check.
    klaviyo.faults.clear()
    klaviyo.inject(429, times=1, path=JOB_GETS, method="GET", retry_after=0.1)
    klaviyo.inject(502, times=1, path=JOB_GETS, method="GET")
    job = bulk.pump(bulk.post("/sync/customers")[1]["jobId"], timeout=60)
    assert job.status == JobStatus.COMPLETED, job
    assert job.klaviyoFailed == 1 and job.errors[0].ctId == refused


@pytest.mark.emulator
def test_partitions_are_verified_and_added_up(
    make_bulk: Callable[..., Bulk], ct: Any, klaviyo: Any,
) -> None:
    for i, prefix in enumerate(("1", "9")):  # one customer refused in each of two partitions
        ct.add("customers", {"id": f"{prefix}0000000-{i}", "email": f"p{i}@example.com",
                             "addresses": []})
        add_refused_customer(ct, f"{prefix}fffffff-{i}")
    bulk = make_bulk(BULK_PARTITIONS_CUSTOMERS="2")
    job_id = bulk.post("/sync/customers")[1]["jobId"]
    bulk.pump(job_id)
    view = status_view(bulk, f"/sync/jobs/{job_id}")
    assert view["status"] == "completed" and view["partitions"] == 2
    assert view["counts"]["sent"] == 2 and view["counts"]["failed"] == 2
    assert view["klaviyoFailed"] == 2 and view["klaviyoChecked"] == 2
    assert sorted(e["ctId"] for e in view["errors"]) == ["1fffffff-0", "9fffffff-1"]


def test_cli_status_shows_klaviyo_refusals(local_env: Path, ct: Any, klaviyo: Any) -> None:
    from bulk.__main__ import main

    add_customers(ct, 2)
    refused = add_refused_customer(ct)
    out = io.StringIO()
    assert main(["sync", "customers", "--no-progress"], out=out, err=io.StringIO()) == 0
    out = io.StringIO()
    assert main(["status", "customers"], out=out, err=io.StringIO()) == 0
    text = out.getvalue()
    assert "read 3  sent 2  skipped 0  failed 1" in text
    assert "Klaviyo jobs checked 1  pending 0  records refused in them 1" in text
    [line] = [line for line in text.splitlines() if line.strip().startswith(refused)]
    assert "code invalid" in line and "Klaviyo job " in line
    assert "@" not in text
    out = io.StringIO()
    assert main(["status", "customers", "--json"], out=out, err=io.StringIO()) == 0
    view = json.loads(out.getvalue())
    assert view["klaviyoFailed"] == 1 and view["errors"][0]["ctId"] == refused


@pytest.mark.emulator
def test_a_partitioned_job_waits_for_every_partition_s_klaviyo_jobs(
    make_bulk: Callable[..., Bulk], ct: Any, klaviyo: Any,
) -> None:
    for prefix in ("1", "9"):
        ct.add("customers", {"id": f"{prefix}0000000", "email": f"p{prefix}@example.com",
                             "addresses": []})
    bulk = make_bulk(BULK_PARTITIONS_CUSTOMERS="2", BULK_VERIFY_WAIT_SECONDS="0.05")
    klaviyo.job_status_sequence = ["processing"] * 10_000
    job_id = bulk.post("/sync/customers")[1]["jobId"]

    def both_verifying(job: Job) -> bool:
        return all(p is not None and p.phase == "verifying" and p.seq >= 2
                   for p in bulk.store.get_parts(job))

    bulk.pump(job_id, until=both_verifying)
    view = status_view(bulk, f"/sync/jobs/{job_id}")
    assert view["status"] == "running" and view["phase"] == "verifying"
    assert view["klaviyoPending"] == 2 and view["counts"]["sent"] == 2
    assert [p["phase"] for p in view["parts"]] == ["verifying"] * 2
    klaviyo.job_status_sequence = []
    bulk.pump(job_id)
    view = status_view(bulk, f"/sync/jobs/{job_id}")
    assert view["status"] == "completed" and view["klaviyoChecked"] == 2
    assert view["klaviyoPending"] == 0 and view["phase"] == "syncing"


# ---- catalog jobs: checked within their batch, their refusals counted ------------------------


def test_catalog_job_refusals_carry_the_job_and_count_as_klaviyo_failed() -> None:
    records = [CatalogRecord("prod-1", {"id": "x"}), CatalogRecord("prod-2", {"id": "y"})]
    job = CatalogJob("item", "update", "job-9", records, attributes={
        "status": "complete", "failed_count": 1,
        "errors": [{"code": "not_found", "status": "404",
                    "source": {"pointer": "/data/attributes/items/data/1"}}]})
    outcome = job_outcome([job])
    [rejected] = outcome.rejected
    assert rejected.error.ct_id == "prod-2" and rejected.error.klaviyo_job == "job-9"
    now = utcnow()
    base = Job(id="j", kind="products", createdAt=now, updatedAt=now)
    refused_by_request = RecordError("prod-3", 400, "invalid", "/data/attributes/items/data/0")
    saved = apply_batch(base, BatchResult(read=3, sent=1, failed=2, cursor="c", errors=[
        rejected.error, refused_by_request]), now=now, lease=job_lease(), worker="w",
        max_errors=10)
    assert saved.klaviyoFailed == 1 and saved.counts.failed == 2
    assert saved.errors[0].klaviyoJobId == "job-9" and saved.errors[1].klaviyoJobId is None
    assert "klaviyoJobId" not in saved.errors[1].model_dump()


def job_lease() -> Any:
    from datetime import timedelta

    return timedelta(seconds=60)
