"""Klaviyo bulk request helpers: chunking, isolating rejected records (by pointer, by halving),
event grouping and de-duplication, catalog jobs and their polling, and per-record counting."""

from __future__ import annotations

import math
from typing import Any

import pytest

from shared.bulk.base import Tally
from shared.deadline import Deadline
from shared.errors import DeadlineExceeded, KlaviyoError
from shared.klaviyo import catalog_resource
from shared.klaviyo.batches import (
    EventRecord,
    ProfileRecord,
    RecordError,
    Rejected,
    chunked,
    dedupe_events,
    send_events,
    send_isolating,
    send_profiles,
)
from shared.klaviyo.catalog_jobs import (
    CatalogJob,
    CatalogRecord,
    PollPolicy,
    job_outcome,
    run_catalog_jobs,
    submit_catalog_jobs,
    wait_for_catalog_jobs,
)
from shared.mapping.events import KlaviyoEvent

FAST = PollPolicy(first=0.001, factor=1.0, cap=0.001)


def rejection(pointer: str | None = None, *, status: int = 400, code: str = "invalid",
              pointers: list[str] | None = None) -> KlaviyoError:
    errors = [{"code": code, "source": {"pointer": p}} for p in (pointers or [])]
    if pointer is not None:
        errors.append({"code": code, "source": {"pointer": pointer}})
    if not errors:
        errors = [{"code": code, "source": {}}]
    return KlaviyoError("rejected", status=status, code=code, errors=errors)


class Recorder:
    """A `send` that rejects any part containing a bad item, pointing at it or not."""

    def __init__(self, bad: set[int], *, point: bool = True, all_errors: bool = False) -> None:
        self.bad = bad
        self.point = point
        self.all_errors = all_errors
        self.calls: list[list[int]] = []

    def __call__(self, part: list[int]) -> str:
        self.calls.append(list(part))
        hits = [i for i, item in enumerate(part) if item in self.bad]
        if hits:
            if not self.point:
                raise rejection()
            if self.all_errors:
                raise rejection(pointers=[f"/data/{i}/attributes/email" for i in hits])
            raise rejection(f"/data/{hits[0]}/attributes/email")
        return f"job-{len(self.calls)}"


def locate(part: list[int], pointer: str) -> list[int] | None:
    segments = pointer.split("/")
    return [int(segments[2])] if len(segments) > 2 and segments[2].isdigit() else None


# ---- chunking -------------------------------------------------------------------------------


def test_chunked_by_count() -> None:
    assert list(chunked(list(range(7)), max_count=3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], max_count=3)) == []
    with pytest.raises(ValueError):
        list(chunked([1], max_count=0))


def test_chunked_by_bytes_keeps_an_oversized_item_alone() -> None:
    sizes = [4, 4, 4, 20, 1, 1]
    chunks = list(chunked(list(range(6)), max_count=10, max_bytes=10, size=lambda i: sizes[i]))
    assert chunks == [[0, 1], [2], [3], [4, 5]]


# ---- isolation ------------------------------------------------------------------------------


def test_all_good_is_one_request() -> None:
    send = Recorder(set())
    outcome = send_isolating(list(range(10)), send, ct_id=str, locate=locate)
    assert outcome.sent == list(range(10)) and outcome.rejected == []
    assert outcome.requests == 1 and outcome.results == ["job-1"]


def test_pointer_takes_the_bad_record_out_in_one_more_request() -> None:
    send = Recorder({7})
    outcome = send_isolating(list(range(100)), send, ct_id=lambda i: f"ct-{i}", locate=locate)
    assert [r.item for r in outcome.rejected] == [7]
    assert outcome.rejected[0].error == RecordError("ct-7", 400, "invalid",
                                                    "/data/7/attributes/email")
    assert sorted(outcome.sent) == [i for i in range(100) if i != 7]
    assert outcome.requests == 2


def test_one_error_at_a_time_costs_one_request_per_bad_record() -> None:
    send = Recorder({3, 50, 99})
    outcome = send_isolating(list(range(100)), send, ct_id=str, locate=locate)
    assert sorted(r.item for r in outcome.rejected) == [3, 50, 99]
    assert len(outcome.sent) == 97 and outcome.requests == 4
    # Pointers are relative to the request that failed: the second one had item 3 removed.
    assert outcome.rejected[1].error.pointer == "/data/49/attributes/email"


def test_all_errors_reported_at_once_cost_one_more_request() -> None:
    send = Recorder({3, 50, 99}, all_errors=True)
    outcome = send_isolating(list(range(100)), send, ct_id=str, locate=locate)
    assert sorted(r.item for r in outcome.rejected) == [3, 50, 99]
    assert outcome.requests == 2


@pytest.mark.parametrize(("n", "bad"), [(1, {0}), (2, {1}), (64, {0}), (100, {63}), (1000, {999})])
def test_without_pointer_halving_isolates_the_record(n: int, bad: set[int]) -> None:
    send = Recorder(bad, point=False)
    outcome = send_isolating(list(range(n)), send, ct_id=str, locate=locate)
    assert [r.item for r in outcome.rejected] == sorted(bad)
    assert sorted(outcome.sent) == [i for i in range(n) if i not in bad]
    assert outcome.requests <= 2 * math.ceil(math.log2(n)) + 1 if n > 1 else outcome.requests == 1
    assert outcome.rejected[0].error.status == 400
    # Order is kept: the good items go out in their original order.
    assert outcome.sent == sorted(outcome.sent)


def test_without_pointer_several_bad_records() -> None:
    send = Recorder({5, 6, 40}, point=False)
    outcome = send_isolating(list(range(64)), send, ct_id=str)
    assert sorted(r.item for r in outcome.rejected) == [5, 6, 40]
    assert len(outcome.sent) == 61


def test_pointer_out_of_range_falls_back_to_halving() -> None:
    calls = []

    def send(part: list[int]) -> None:
        calls.append(part)
        if 3 in part:
            raise rejection("/data/999/attributes/email")

    outcome = send_isolating(list(range(8)), send, ct_id=str, locate=locate)
    assert [r.item for r in outcome.rejected] == [3]


@pytest.mark.parametrize("status", [413, 422])
def test_other_record_rejections_are_isolated(status: int) -> None:
    def send(part: list[int]) -> None:
        if 2 in part:
            raise rejection(status=status, code="too_large")

    outcome = send_isolating(list(range(4)), send, ct_id=str)
    assert [r.item for r in outcome.rejected] == [2]
    assert outcome.rejected[0].error == RecordError("2", status, "too_large", None)


@pytest.mark.parametrize(
    "error",
    [
        KlaviyoError("throttled", status=429, retry_after=1),
        KlaviyoError("down", status=503),
        KlaviyoError("unreachable", status=None),
        KlaviyoError("forbidden", status=403),
        DeadlineExceeded("late"),
    ],
)
def test_errors_about_no_record_propagate(error: Exception) -> None:
    def send(part: list[int]) -> None:
        raise error

    with pytest.raises(type(error)):
        send_isolating([1, 2, 3], send, ct_id=str, locate=locate)


def test_nothing_to_send_is_no_request() -> None:
    outcome = send_isolating([], Recorder(set()), ct_id=str)
    assert outcome.requests == 0


# ---- profiles over HTTP -----------------------------------------------------------------------


@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
def test_profiles_one_invalid_email_is_isolated(klaviyo_client: Any, klaviyo: Any) -> None:
    profiles = [ProfileRecord(f"c{i:03d}", {"email": f"u{i}@example.org",
                                            "external_id": f"c{i:03d}"}) for i in range(30)]
    profiles[17] = ProfileRecord("c017", {"email": "not an email", "external_id": "c017"})
    outcome = send_profiles(klaviyo_client, profiles, deadline=Deadline.after(30))
    assert [r.error for r in outcome.rejected] == [
        RecordError("c017", 400, "invalid", "/data/attributes/profiles/data/17/attributes/email")
    ]
    assert len(outcome.sent) == 29 and outcome.requests == 2
    assert len(outcome.results) == 1  # one accepted import job
    assert len(klaviyo.profiles) == 29
    assert len(klaviyo.requests_to("POST", "/api/profile-bulk-import-jobs")) == 2


def test_profiles_are_chunked_to_the_limit(klaviyo_client: Any, klaviyo: Any) -> None:
    profiles = [ProfileRecord(str(i), {"email": f"u{i}@example.org"}) for i in range(25)]
    outcome = send_profiles(klaviyo_client, profiles, deadline=Deadline.after(30), max_count=10)
    assert outcome.requests == 3 and len(outcome.sent) == 25
    sizes = [len(r.json["data"]["attributes"]["profiles"]["data"])
             for r in klaviyo.requests_to("POST", "/api/profile-bulk-import-jobs")]
    assert sizes == [10, 10, 5]


# ---- events over HTTP -------------------------------------------------------------------------


def event(metric: str, unique_id: str, email: str = "a@example.org", **profile: Any
          ) -> KlaviyoEvent:
    return KlaviyoEvent(metric=metric, profile={"email": email, **profile},
                        properties={"OrderId": unique_id.split(":")[0]},
                        time="2025-01-02T03:04:05.000Z", unique_id=unique_id, value=1.0,
                        value_currency="EUR")


def test_events_grouped_per_profile_with_backfill_on_every_event(
    klaviyo_client: Any, klaviyo: Any
) -> None:
    records = [EventRecord("o1", event("Placed Order", "o1:placed")),
               EventRecord("o2", event("Placed Order", "o2:placed", "b@example.org")),
               EventRecord("o1", event("Ordered Product", "li-1"))]
    outcome = send_events(klaviyo_client, records, deadline=Deadline.after(30))
    assert len(outcome.sent) == 3 and outcome.requests == 1
    (request,) = klaviyo.requests_to("POST", "/api/event-bulk-create-jobs")
    entries = request.json["data"]["attributes"]["events-bulk-create"]["data"]
    assert [e["attributes"]["profile"]["data"]["attributes"]["email"] for e in entries] == [
        "a@example.org", "b@example.org"]
    assert [len(e["attributes"]["events"]["data"]) for e in entries] == [2, 1]
    for entry in entries:
        for ev in entry["attributes"]["events"]["data"]:
            assert ev["attributes"]["backfill"] is True
    assert sorted((e["metric"], e["unique_id"], e["backfill"]) for e in klaviyo.events) == [
        ("Ordered Product", "li-1", True), ("Placed Order", "o1:placed", True),
        ("Placed Order", "o2:placed", True)]


@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
def test_repeated_unique_id_is_isolated_by_pointer(klaviyo_client: Any, klaviyo: Any) -> None:
    records = [EventRecord(f"o{i}", event("Placed Order", f"o{i}:placed")) for i in range(10)]
    records.insert(6, EventRecord("dup", event("Placed Order", "o2:placed")))
    outcome = send_events(klaviyo_client, records, deadline=Deadline.after(30))
    assert [r.error for r in outcome.rejected] == [RecordError(
        "dup", 400, "duplicate_unique_id",
        "/data/attributes/events-bulk-create/data/0/attributes/events/data/6/attributes/unique_id")]
    assert len(outcome.sent) == 10 and outcome.requests == 2
    assert len(klaviyo.events) == 10


@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
def test_bad_profile_rejects_every_event_of_its_entry(klaviyo_client: Any, klaviyo: Any) -> None:
    records = [EventRecord("o1", event("Placed Order", "o1:placed")),
               EventRecord("bad", event("Placed Order", "o2:placed", "nope")),
               EventRecord("bad", event("Ordered Product", "li-2", "nope")),
               EventRecord("o3", event("Placed Order", "o3:placed", "c@example.org"))]
    outcome = send_events(klaviyo_client, records, deadline=Deadline.after(30))
    assert sorted(r.item.event.unique_id for r in outcome.rejected) == ["li-2", "o2:placed"]
    assert {r.error.pointer for r in outcome.rejected} == {
        "/data/attributes/events-bulk-create/data/1/attributes/profile/data/attributes/email"}
    assert outcome.requests == 2 and len(klaviyo.events) == 2


def test_events_are_chunked_to_1000(klaviyo_client: Any, klaviyo: Any) -> None:
    records = [EventRecord(f"o{i}", event("Placed Order", f"o{i}:placed", f"u{i % 7}@example.org"))
               for i in range(2100)]
    outcome = send_events(klaviyo_client, records, deadline=Deadline.after(30))
    assert outcome.requests == 3 and len(outcome.sent) == 2100
    assert len(klaviyo.events) == 2100


def test_dedupe_keeps_the_first_per_person_metric_and_unique_id() -> None:
    a = EventRecord("o1", event("Placed Order", "x"))
    same_person = EventRecord("o2", event("Placed Order", "x", "A@Example.org"))
    other_metric = EventRecord("o3", event("Cancelled Order", "x"))
    other_person = EventRecord("o4", event("Placed Order", "x", "b@example.org"))
    kept, dropped = dedupe_events([a, same_person, other_metric, other_person])
    assert kept == [a, other_metric, other_person] and dropped == [same_person]


# ---- catalog jobs over HTTP -------------------------------------------------------------------


def category(i: int, **attributes: Any) -> CatalogRecord:
    attrs = {"name": f"Category {i}", **attributes}
    return CatalogRecord(f"cat-{i}", catalog_resource("category", "create", f"cat-{i}", attrs))


@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
def test_catalog_job_rejected_for_one_resource_is_isolated(
    klaviyo_client: Any, klaviyo: Any
) -> None:
    records = [category(i) for i in range(5)]
    records[3] = CatalogRecord("cat-3", catalog_resource("category", "create", "cat-3",
                                                         {"name": 42}))
    jobs, outcome = submit_catalog_jobs(klaviyo_client, "category", "create", records,
                                        deadline=Deadline.after(30))
    assert [r.error for r in outcome.rejected] == [RecordError(
        "cat-3", 400, "invalid", "/data/attributes/categories/data/3/attributes/name")]
    assert len(jobs) == 1 and len(jobs[0].records) == 4 and outcome.requests == 2


def test_jobs_are_polled_while_queued_or_processing(klaviyo_client: Any, klaviyo: Any) -> None:
    records = [category(i) for i in range(250)]
    jobs, _ = submit_catalog_jobs(klaviyo_client, "category", "create", records,
                                  deadline=Deadline.after(30))
    assert [len(j.records) for j in jobs] == [100, 100, 50]
    sleeps: list[float] = []
    outcome = wait_for_catalog_jobs(klaviyo_client, jobs, deadline=Deadline.after(30),
                                    poll=PollPolicy(first=0.001, factor=2, cap=0.004),
                                    sleep=sleeps.append)
    # The fake answers queued, processing, then complete: three GETs per job, in job order.
    assert outcome.requests == 9 and len(outcome.sent) == 250
    assert all(j.attributes and j.attributes["status"] == "complete" for j in jobs)
    assert sleeps == [0.001, 0.002, 0.004, 0.004, 0.004, 0.004]
    assert len(klaviyo.categories) == 250


def test_job_errors_become_record_errors(klaviyo_client: Any, klaviyo: Any) -> None:
    klaviyo.job_status_sequence = []
    run_catalog_jobs(klaviyo_client, [("category", "create", [category(1)])],
                     deadline=Deadline.after(30), poll=FAST)
    outcome = run_catalog_jobs(
        klaviyo_client, [("category", "create", [category(0), category(1), category(2)])],
        deadline=Deadline.after(30), poll=FAST)
    assert [r.error for r in outcome.rejected] == [
        RecordError("cat-1", None, "conflict", "/data/attributes/categories/data/1")]
    assert sorted(r.ct_id for r in outcome.sent) == ["cat-0", "cat-2"]


def test_polling_past_the_deadline_raises(klaviyo_client: Any, klaviyo: Any) -> None:
    klaviyo.job_status_sequence = ["queued"] * 100
    jobs, _ = submit_catalog_jobs(klaviyo_client, "category", "create", [category(0)],
                                  deadline=Deadline.after(30))
    with pytest.raises(DeadlineExceeded):
        wait_for_catalog_jobs(klaviyo_client, jobs, deadline=Deadline.after(0.3),
                              poll=PollPolicy(first=0.05, factor=1, cap=0.05))


def test_cancelled_or_unattributable_failures_fail_the_whole_job() -> None:
    records = [CatalogRecord(f"p{i}", {"type": "catalog-item"}) for i in range(3)]
    cancelled = CatalogJob("item", "create", "j1", records,
                           {"status": "cancelled", "failed_count": 0, "errors": []})
    unplaced = CatalogJob("item", "create", "j2", records,
                          {"status": "complete", "failed_count": 1,
                           "errors": [{"code": "x", "source": {"pointer": "/data"}}]})
    attributed = CatalogJob("item", "create", "j3", records,
                            {"status": "complete", "failed_count": 1, "errors": [
                                {"code": "x", "status": "404",
                                 "source": {"pointer": "/data/attributes/items/data/2"}}]})
    outcome = job_outcome([cancelled, unplaced, attributed])
    assert len(outcome.rejected) == 7 and [r.ct_id for r in outcome.sent] == ["p0", "p1"]
    assert outcome.rejected[0].error.code == "job_cancelled"
    assert outcome.rejected[-1].error == RecordError("p2", 404, "x",
                                                     "/data/attributes/items/data/2")


# ---- counting -------------------------------------------------------------------------------


def test_tally_counts_each_record_once() -> None:
    tally = Tally()
    tally.read = 6
    tally.skip("a")
    tally.fail(RecordError("b", 400, "invalid"))
    tally.fail(RecordError("b", 400, "other"))  # a second error of the same record
    tally.fail_all([Rejected(None, RecordError("c", 400))])
    tally.fail(RecordError("a", 400))  # skipped records cannot fail
    result = tally.result(cursor="f", done=False)
    assert (result.read, result.sent, result.skipped, result.failed) == (6, 3, 1, 2)
    assert result.read == result.sent + result.skipped + result.failed
    assert [e.code for e in result.errors] == ["invalid", None]
    assert result.cursor == "f" and not result.done
