"""KlaviyoClient against the fake Klaviyo over real HTTP."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from shared.config import DEFAULT_KLAVIYO_REVISION
from shared.deadline import Deadline
from shared.errors import DeadlineExceeded, KlaviyoError
from shared.klaviyo import KlaviyoClient, catalog_id, catalog_ref, catalog_resource
from shared.klaviyo.bulk import CatalogOp
from shared.klaviyo.catalog import CatalogKind
from shared.retry import MAX_AUTH_ATTEMPTS
from tests.checks import known
from tests.fakes.klaviyo import FakeKlaviyo, error_object

ITEM: dict[str, Any] = {"title": "Shirt", "description": "A shirt",
                        "url": "https://shop.example/p/1", "price": 42.0}
VARIANT: dict[str, Any] = {"title": "Shirt M", "description": "A shirt", "sku": "SKU-M",
                           "inventory_quantity": 3, "price": 42.0,
                           "url": "https://shop.example/p/1?v=m"}


def make_client(fake: FakeKlaviyo, **kwargs: Any) -> KlaviyoClient:
    options: dict[str, Any] = {"timeout": (1.0, 2.0), "retry_base": 0.05, "retry_cap": 0.2}
    options.update(kwargs)
    return KlaviyoClient(fake.api_key, fake.url, DEFAULT_KLAVIYO_REVISION, **options)


def event(metric: str, unique_id: str | None = None, **extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        "properties": {"OrderId": "o-1"},
        "time": "2026-01-01T12:00:00+00:00",
        **extra,
    }
    if unique_id:
        attrs["unique_id"] = unique_id
    return attrs


# -- transport -------------------------------------------------------------------------------------


def test_sends_auth_revision_jsonapi_headers(klaviyo: FakeKlaviyo,
                                             klaviyo_client: KlaviyoClient) -> None:
    klaviyo_client.upsert_profile({"external_id": "c1"})
    klaviyo_client.find_profile_by_external_id("c1")

    post, get = klaviyo.requests
    assert post.header("Authorization") == f"Klaviyo-API-Key {klaviyo.api_key}"
    assert post.header("revision") == DEFAULT_KLAVIYO_REVISION
    assert post.header("accept") == "application/vnd.api+json"
    assert post.header("content-type") == "application/vnd.api+json"
    assert "ct-klaviyo-connector" in (post.header("user-agent") or "")
    assert get.header("revision") == DEFAULT_KLAVIYO_REVISION
    assert get.header("content-type") is None  # no body, no content type
    assert "api_key" not in repr(klaviyo_client) and klaviyo.api_key not in repr(klaviyo_client)


@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
def test_wrong_key_is_a_bounded_retryable_401(klaviyo: FakeKlaviyo) -> None:
    client = KlaviyoClient("pk_wrong", klaviyo.url, DEFAULT_KLAVIYO_REVISION)
    with pytest.raises(KlaviyoError) as info:
        client.upsert_profile({"external_id": "c1"})
    assert info.value.status == 401 and info.value.code == "not_authenticated"
    assert info.value.retryable and info.value.fix_variables == "KLAVIYO_API_KEY"
    assert len(klaviyo.requests) == MAX_AUTH_ATTEMPTS


@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
def test_fake_checks_revision_and_content_type(klaviyo: FakeKlaviyo) -> None:
    auth = {"Authorization": f"Klaviyo-API-Key {klaviyo.api_key}"}
    body = json.dumps({"data": {"type": "profile", "attributes": {"external_id": "x"}}})
    no_revision = requests.post(f"{klaviyo.url}/api/profile-import", data=body, timeout=5,
                                headers={**auth, "content-type": "application/vnd.api+json"})
    assert no_revision.status_code == 400
    assert no_revision.json()["errors"][0]["source"] == {"parameter": "revision"}
    wrong_type = requests.post(f"{klaviyo.url}/api/profile-import", data=body, timeout=5,
                               headers={**auth, "revision": "2026-07-15",
                                        "content-type": "text/plain"})
    assert wrong_type.status_code == 415
    assert set(wrong_type.json()["errors"][0]) >= {"id", "status", "code", "title", "detail",
                                                   "source", "meta"}
    assert klaviyo.profiles == {}


# -- profiles --------------------------------------------------------------------------------------


def test_upsert_profile_creates_then_updates(klaviyo: FakeKlaviyo,
                                             klaviyo_client: KlaviyoClient) -> None:
    created = klaviyo_client.upsert_profile(
        {"email": "ann@shop.example", "external_id": "c1", "first_name": "Ann"})
    updated = klaviyo_client.upsert_profile(
        {"external_id": "c1", "first_name": "Anne", "properties": {"tier": "gold"}})

    assert [r.status for r in klaviyo.requests] == [201, 200]
    assert created["id"] == updated["id"] and created["type"] == "profile"
    stored = klaviyo.profiles[created["id"]]["attributes"]
    assert stored["first_name"] == "Anne" and stored["email"] == "ann@shop.example"
    assert stored["properties"] == {"tier": "gold"}
    assert len(klaviyo.profiles) == 1


def test_duplicate_profile_conflict_updates_the_named_profile(
        klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    existing = klaviyo.add_profile(email="ann@shop.example")
    klaviyo.inject(409, path="/api/profile-import", errors=[error_object(
        409, "duplicate_profile", "Conflict.",
        "A profile already exists with one of these identifiers.",
        pointer="/data/attributes", meta={"duplicate_profile_id": existing})])

    result = klaviyo_client.upsert_profile({"email": "ann@shop.example", "first_name": "Ann"})

    first, second = klaviyo.requests
    assert first.status == 409 and "id" not in first.json["data"]
    assert second.json["data"]["id"] == existing and second.status == 200
    assert result["id"] == existing
    assert klaviyo.profiles[existing]["attributes"]["first_name"] == "Ann"


def test_duplicate_profile_conflict_updates_the_named_profile_without_identifiers(
        klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    by_email = klaviyo.add_profile(email="ann@shop.example")
    by_external_id = klaviyo.add_profile(external_id="c1")

    klaviyo_client.upsert_profile(
        {"email": "ann@shop.example", "external_id": "c1", "first_name": "Ann"})

    assert [r.status for r in klaviyo.requests] == [409, 409, 200]
    assert klaviyo.requests[1].json["data"]["id"] == by_external_id
    assert klaviyo.requests[2].json["data"] == {
        "type": "profile", "id": by_external_id, "attributes": {"first_name": "Ann"}}
    assert set(klaviyo.profiles) == {by_email, by_external_id}
    assert klaviyo.profiles[by_external_id]["attributes"]["first_name"] == "Ann"


def test_duplicate_profile_conflict_gives_up_after_the_fallback(
        klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    klaviyo.add_profile(email="ann@shop.example")
    other = klaviyo.add_profile(external_id="c1")
    duplicate = [{"id": "e", "status": 409, "code": "duplicate_profile", "title": "Conflict.",
                  "detail": "A profile already exists with one of these identifiers.",
                  "source": {"pointer": "/data/attributes"},
                  "meta": {"duplicate_profile_id": other}}]
    klaviyo.inject(409, times=3, path="/api/profile-import", errors=duplicate)

    with pytest.raises(KlaviyoError) as info:
        klaviyo_client.upsert_profile({"email": "ann@shop.example", "external_id": "c1"})

    assert info.value.status == 409 and info.value.code == "duplicate_profile"
    assert len(klaviyo.requests) == 3


@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
def test_rejected_phone_is_dropped_and_profile_upserted(
        klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    profile = klaviyo_client.upsert_profile(
        {"external_id": "c1", "phone_number": "0176 5555", "first_name": "Ann"})

    first, second = klaviyo.requests
    assert first.status == 400 and first.json["data"]["attributes"]["phone_number"]
    assert "phone_number" not in second.json["data"]["attributes"] and second.status == 201
    assert "phone_number" not in klaviyo.profiles[profile["id"]]["attributes"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "dropping the phone number must be logged"
    assert all("0176" not in json.dumps(r.__dict__, default=str) for r in caplog.records)


@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
def test_unknown_attribute_is_a_terminal_error_with_pointer(
        klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    with pytest.raises(KlaviyoError) as info:
        klaviyo_client.upsert_profile({"external_id": "c1", "company": "ACME"})

    error = info.value
    assert error.status == 400 and error.code == "invalid" and not error.retryable
    assert error.log_fields()["errorPointers"] == ["/data/attributes/company"]
    assert len(klaviyo.requests) == 1


def test_find_profile_by_external_id_and_email(klaviyo: FakeKlaviyo,
                                               klaviyo_client: KlaviyoClient) -> None:
    odd = 'c"1\\x'
    pid = klaviyo.add_profile(email="Ann@Shop.example", external_id=odd)
    klaviyo.add_profile(email="bob@shop.example", external_id="c2")

    assert known(klaviyo_client.find_profile_by_external_id(odd))["id"] == pid
    assert known(klaviyo_client.find_profile_by_email("ann@shop.EXAMPLE"))["id"] == pid
    assert klaviyo_client.find_profile_by_external_id("nope") is None
    assert klaviyo.requests[0].query["filter"] == 'equals(external_id,"c\\"1\\\\x")'


# -- retries ---------------------------------------------------------------------------------------


def test_429_waits_for_retry_after(klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    klaviyo.inject(429, path="/api/events", retry_after=1)
    started = time.monotonic()
    klaviyo_client.create_event({**event("Placed Order", "o-1"), "profile": {
        "data": {"type": "profile", "attributes": {"external_id": "c1"}}}})
    elapsed = time.monotonic() - started

    assert elapsed >= 0.95
    assert [(r.status, r.faulted) for r in klaviyo.requests] == [(429, True), (202, False)]
    assert len(klaviyo.events) == 1


def test_500_twice_then_success(klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    klaviyo.inject(500, times=2, path="/api/profile-import")
    klaviyo_client.upsert_profile({"external_id": "c1"})
    assert [r.status for r in klaviyo.requests] == [500, 500, 201]


def test_500_forever_stops_at_the_deadline(klaviyo: FakeKlaviyo) -> None:
    client = make_client(klaviyo, max_attempts=1000, retry_base=0.2, retry_cap=1.0)
    klaviyo.inject(503, times=10_000)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        client.upsert_profile({"external_id": "c1"}, deadline=Deadline.after(2.0))
    assert time.monotonic() - started < 3.0
    assert len(klaviyo.requests) >= 2


def test_dropped_connection_is_retried(klaviyo: FakeKlaviyo,
                                       klaviyo_client: KlaviyoClient) -> None:
    klaviyo.inject_disconnect(path="/api/profile-import")
    klaviyo_client.upsert_profile({"external_id": "c1"})
    assert [(r.status, r.faulted) for r in klaviyo.requests] == [(None, True), (201, False)]


def test_read_timeout_is_retried(klaviyo: FakeKlaviyo) -> None:
    client = make_client(klaviyo, timeout=(1.0, 0.3))
    klaviyo.inject(None, delay=0.8, path="/api/catalog-categories")
    assert client.get_catalog_category("c1") is None  # the retry got a real (404) answer
    assert len(klaviyo.requests) == 2 and klaviyo.requests[0].faulted


def test_read_timeout_never_outlives_the_deadline(klaviyo: FakeKlaviyo) -> None:
    client = make_client(klaviyo, timeout=(1.0, 10.0))
    klaviyo.inject(None, delay=2.0, path="/api/catalog-items")
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        client.get_catalog_item("p1", deadline=Deadline.after(0.5))
    assert time.monotonic() - started < 1.0


def test_retry_log_lines_carry_no_ids_or_bodies(klaviyo: FakeKlaviyo,
                                                klaviyo_client: KlaviyoClient,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    klaviyo.inject(502, path="/api/catalog-items")
    klaviyo_client.upsert_catalog_item("secret-product", ITEM)
    (retry,) = [r for r in caplog.records if "retrying" in r.getMessage()]
    fields = vars(retry)  # the log line's extra fields are attributes of its record
    assert fields["path"] == "/api/catalog-items/{id}" and fields["status"] == 502
    assert fields["attempt"] == 1
    assert "secret-product" not in json.dumps(retry.__dict__, default=str)


# -- events ----------------------------------------------------------------------------------------


def test_create_event_and_redelivery_is_deduplicated(klaviyo: FakeKlaviyo,
                                                     klaviyo_client: KlaviyoClient) -> None:
    attrs = {**event("Placed Order", "order-1", value=9.99),
             "profile": {"data": {"type": "profile",
                                  "attributes": {"email": "ann@shop.example"}}}}
    # `-> None` says it returns nothing; the ignore keeps the run-time check of that too
    assert klaviyo_client.create_event(attrs) is None  # type: ignore[func-returns-value]
    klaviyo_client.create_event(attrs)

    assert [r.status for r in klaviyo.requests] == [202, 202]
    assert klaviyo.requests[0].json == {"data": {"type": "event", "attributes": attrs}}
    (stored,) = klaviyo.events
    assert stored["metric"] == "Placed Order" and stored["unique_id"] == "order-1"
    assert known(klaviyo.find_profile(email="ann@shop.example"))["id"] == stored["profile_id"]


# -- catalog ---------------------------------------------------------------------------------------


def test_catalog_crud(klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    c = klaviyo_client
    c.create_catalog_category("cat-1", {"name": "Shirts"})
    item = c.create_catalog_item("p/1", ITEM, {"categories": {"data": [
        catalog_ref("category", "cat-1")]}})
    assert item["id"] == catalog_id("p/1") == "$custom:::$default:::p/1"
    c.create_catalog_variant("SKU-M", VARIANT, {"item": {"data": catalog_ref("item", "p/1")}})

    post = klaviyo.requests_to("POST", "/api/catalog-items")[0]
    assert post.json["data"]["attributes"]["integration_type"] == "$custom"
    assert post.json["data"]["attributes"]["catalog_type"] == "$default"
    assert klaviyo.items[catalog_id("p/1")]["relationships"]["categories"] == [
        catalog_id("cat-1")]

    c.update_catalog_item("p/1", {**ITEM, "external_id": "p/1", "title": "Better shirt"})
    patch = klaviyo.requests_to("PATCH")[0]
    assert patch.raw_path == "/api/catalog-items/%24custom%3A%3A%3A%24default%3A%3A%3Ap%2F1"
    assert patch.json["data"]["id"] == catalog_id("p/1")
    assert "external_id" not in patch.json["data"]["attributes"]
    assert known(c.get_catalog_item("p/1"))["attributes"]["title"] == "Better shirt"
    assert known(c.get_catalog_variant("SKU-M"))["attributes"]["sku"] == "SKU-M"
    c.update_catalog_category("cat-1", {"name": "Tops"})
    assert klaviyo.categories[catalog_id("cat-1")]["attributes"]["name"] == "Tops"

    assert c.delete_catalog_variant("SKU-M") is True
    assert c.delete_catalog_variant("SKU-M") is False
    assert c.delete_catalog_item("p/1") is True
    assert c.get_catalog_item("p/1") is None
    assert klaviyo.items == {} and klaviyo.variants == {}


@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
def test_create_catalog_item_missing_required_attribute(klaviyo: FakeKlaviyo,
                                                        klaviyo_client: KlaviyoClient) -> None:
    with pytest.raises(KlaviyoError) as info:
        klaviyo_client.create_catalog_item("p1", {"title": "No url", "description": "d"})
    assert info.value.status == 400
    assert info.value.log_fields()["errorPointers"] == ["/data/attributes/url"]


def test_upsert_catalog_item_patches_then_creates_on_404(
        klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    klaviyo_client.upsert_catalog_item("p1", ITEM)
    klaviyo_client.upsert_catalog_item("p1", {**ITEM, "price": 40.0})

    assert [(r.method, r.status) for r in klaviyo.requests] == [
        ("PATCH", 404), ("POST", 201), ("PATCH", 200)]
    assert klaviyo.items[catalog_id("p1")]["attributes"]["price"] == 40.0


def test_upsert_catalog_item_race_409_patches_again(klaviyo: FakeKlaviyo,
                                                    klaviyo_client: KlaviyoClient) -> None:
    klaviyo_client.create_catalog_item("p1", ITEM)
    klaviyo.requests.clear()
    # Our PATCH sees "not there yet"; by the time we POST, someone else has created it.
    klaviyo.inject(404, method="PATCH", path="/api/catalog-items")

    klaviyo_client.upsert_catalog_item("p1", {**ITEM, "title": "Mine"})

    assert [(r.method, r.status) for r in klaviyo.requests] == [
        ("PATCH", 404), ("POST", 409), ("PATCH", 200)]
    assert klaviyo.items[catalog_id("p1")]["attributes"]["title"] == "Mine"


def test_upsert_variant_sends_item_relationship_only_on_create(
        klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    klaviyo_client.create_catalog_item("p1", ITEM)
    rel = {"item": {"data": catalog_ref("item", "p1")}}
    klaviyo_client.upsert_catalog_variant("SKU-M", VARIANT, rel)
    klaviyo_client.upsert_catalog_variant("SKU-M", {**VARIANT, "inventory_quantity": 0}, rel)

    patches = klaviyo.requests_to("PATCH", "/api/catalog-variants")
    assert [p.status for p in patches] == [404, 200]
    assert all("relationships" not in p.json["data"] for p in patches)
    assert klaviyo.requests_to("POST", "/api/catalog-variants")[0].json["data"][
        "relationships"] == rel
    assert klaviyo.variants[catalog_id("SKU-M")]["attributes"]["inventory_quantity"] == 0


def test_listing_follows_links_next_across_pages(klaviyo: FakeKlaviyo,
                                                 klaviyo_client: KlaviyoClient) -> None:
    for n in range(5):
        klaviyo_client.create_catalog_item(f"p{n}", ITEM)
    klaviyo.page_size = 2
    klaviyo.requests.clear()

    ids = [i["id"] for i in klaviyo_client.iter_catalog_items()]
    assert ids == [catalog_id(f"p{n}") for n in range(5)]
    assert len(klaviyo.requests) == 3

    klaviyo.requests.clear()
    wanted = [catalog_id(f"p{n}") for n in (0, 2, 4)]
    expression = "any(ids," + json.dumps(wanted) + ")"
    assert [i["id"] for i in klaviyo_client.iter_catalog_items(filter=expression)] == wanted
    assert [r.query.get("filter") for r in klaviyo.requests] == [expression, expression]


def test_iter_item_variants_pages_and_tolerates_missing_item(
        klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    for product in ("p1", "p2"):
        klaviyo_client.create_catalog_item(product, ITEM)
        for size in ("S", "M", "L"):
            klaviyo_client.create_catalog_variant(
                f"{product}-{size}", {**VARIANT, "sku": f"{product}-{size}"},
                {"item": {"data": catalog_ref("item", product)}})
    klaviyo.page_size = 1

    skus = [v["attributes"]["sku"] for v in klaviyo_client.iter_item_variants("p2")]
    assert skus == ["p2-S", "p2-M", "p2-L"]
    assert list(klaviyo_client.iter_item_variants("gone")) == []


# -- bulk jobs -------------------------------------------------------------------------------------


def test_profile_bulk_import_job_polls_through_queued_to_complete(
        klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    c = klaviyo_client
    job_id = c.create_profile_bulk_import_job([
        {"email": "a@shop.example", "external_id": "c1"},
        {"email": "b@shop.example", "external_id": "c2", "phone_number": "12"},
        {"external_id": "c3", "first_name": "Cy"},
    ])
    post = klaviyo.requests[0]
    assert post.json["data"]["type"] == "profile-bulk-import-job"
    assert post.json["data"]["attributes"]["profiles"]["data"][0] == {
        "type": "profile", "attributes": {"email": "a@shop.example", "external_id": "c1"}}

    final = c.wait_for_job(c.get_profile_bulk_import_job, job_id, poll_interval=0.01)

    assert final["status"] == "complete"
    assert (final["total_count"], final["completed_count"], final["failed_count"]) == (3, 2, 1)
    assert len(klaviyo.requests_to("GET", "/api/profile-bulk-import-jobs")) == 3
    (error,) = c.get_profile_bulk_import_errors(job_id)
    assert error["source"]["pointer"].endswith("/1/attributes/phone_number")
    assert {p["attributes"].get("external_id") for p in klaviyo.profiles.values()} == {"c1", "c3"}


@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
def test_profile_bulk_import_one_bad_email_rejects_the_whole_request(
        klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    with pytest.raises(KlaviyoError) as info:
        klaviyo_client.create_profile_bulk_import_job(
            [{"email": "a@shop.example"}, {"email": "not-an-email"}])
    assert info.value.status == 400 and not info.value.retryable
    assert info.value.log_fields()["errorPointers"] == [
        "/data/attributes/profiles/data/1/attributes/email"]
    assert klaviyo.profiles == {}


def test_event_bulk_job(klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    entries: list[dict[str, Any]] = [
        {"profile": {"external_id": "c1"}, "backfill": True,
         "events": [event("Placed Order", "o1"), event("Ordered Product", "o1-li1")]},
        {"profile": {"email": "b@shop.example"}, "events": [event("Placed Order", "o2")]},
    ]
    # `-> None` says it returns nothing; the ignore keeps the run-time check of that too
    assert klaviyo_client.create_event_bulk_job(entries) is None  # type: ignore[func-returns-value]

    (post,) = klaviyo.requests
    assert post.status == 202
    data = post.json["data"]
    assert data["type"] == "event-bulk-create-job"
    first = data["attributes"]["events-bulk-create"]["data"][0]
    assert first["type"] == "event-bulk-create" and first["attributes"]["backfill"] is True
    assert first["attributes"]["profile"]["data"]["attributes"] == {"external_id": "c1"}
    assert first["attributes"]["events"]["data"][1]["type"] == "event"
    assert sorted(e["unique_id"] for e in klaviyo.events) == ["o1", "o1-li1", "o2"]
    assert all(e["backfill"] for e in klaviyo.events if e["unique_id"].startswith("o1"))


@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
def test_event_bulk_job_repeated_unique_id_fails_whole_request(
        klaviyo: FakeKlaviyo, klaviyo_client: KlaviyoClient) -> None:
    entries = [{"profile": {"external_id": "c1"},
                "events": [event("Placed Order", "o1"), event("Placed Order", "o1")]}]
    with pytest.raises(KlaviyoError) as info:
        klaviyo_client.create_event_bulk_job(entries)
    assert info.value.status == 400
    assert klaviyo.events == [] and klaviyo.profiles == {}


@pytest.mark.parametrize("kind", ["category", "item", "variant"])
def test_catalog_bulk_jobs_create_update_delete(kind: CatalogKind, klaviyo: FakeKlaviyo,
                                                klaviyo_client: KlaviyoClient) -> None:
    c = klaviyo_client
    attrs = {"category": {"name": "Shirts"}, "item": ITEM, "variant": VARIANT}[kind]
    rels = None
    if kind == "variant":
        c.create_catalog_item("p1", ITEM)
        rels = {"item": {"data": catalog_ref("item", "p1")}}
    store = klaviyo.catalog_state(kind)

    def run(op: CatalogOp, resources: list[dict[str, Any]]) -> dict[str, Any]:
        job_id = c.create_catalog_bulk_job(kind, op, resources)
        get = functools.partial(c.get_catalog_bulk_job, kind, op)
        return c.wait_for_job(get, job_id, poll_interval=0.01)

    created = run("create", [catalog_resource(kind, "create", f"x{n}", attrs, rels)
                             for n in range(3)])
    assert (created["status"], created["completed_count"], created["failed_count"]) == (
        "complete", 3, 0)
    assert set(store) == {catalog_id(f"x{n}") for n in range(3)}
    body = klaviyo.requests_to("POST", f"/api/catalog-{kind}-bulk-create-jobs")[0].json
    assert body["data"]["type"] == f"catalog-{kind}-bulk-create-job"
    bulk_key = {"category": "categories", "item": "items", "variant": "variants"}[kind]
    assert len(body["data"]["attributes"][bulk_key]["data"]) == 3

    new_name = {"name": "Tops"} if kind == "category" else {"title": "Renamed"}
    updated = run("update", [catalog_resource(kind, "update", "x0", {**attrs, **new_name}),
                             catalog_resource(kind, "update", "missing", new_name)])
    assert (updated["completed_count"], updated["failed_count"]) == (1, 1)
    assert updated["errors"][0]["code"] == "not_found"
    field = "name" if kind == "category" else "title"
    assert store[catalog_id("x0")]["attributes"][field] == new_name[field]

    deleted = run("delete", [catalog_resource(kind, "delete", f"x{n}") for n in range(3)])
    assert deleted["completed_count"] == 3 and store == {}
    # queued → processing → complete, for each of the three jobs
    assert len(klaviyo.requests_to("GET", f"/api/catalog-{kind}-bulk-")) == 9


def test_wait_for_job_gives_up_at_the_deadline(klaviyo: FakeKlaviyo,
                                               klaviyo_client: KlaviyoClient) -> None:
    klaviyo.job_status_sequence = ["queued"] * 1000
    job_id = klaviyo_client.create_catalog_bulk_job(
        "category", "create", [catalog_resource("category", "create", "c1", {"name": "A"})])
    get = functools.partial(klaviyo_client.get_catalog_bulk_job, "category", "create")
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        klaviyo_client.wait_for_job(get, job_id, deadline=Deadline.after(0.3),
                                    poll_interval=0.05)
    assert time.monotonic() - started < 0.6


def test_bulk_limits_are_checked_before_sending(klaviyo: FakeKlaviyo,
                                                klaviyo_client: KlaviyoClient) -> None:
    c = klaviyo_client
    with pytest.raises(ValueError):
        c.create_profile_bulk_import_job([{"external_id": str(n)} for n in range(10_001)])
    with pytest.raises(ValueError):
        c.create_event_bulk_job([
            {"profile": {"external_id": "a"}, "events": [event("E", str(n)) for n in range(600)]},
            {"profile": {"external_id": "b"}, "events": [event("E", str(n)) for n in range(401)]},
        ])
    with pytest.raises(ValueError):
        c.create_catalog_bulk_job("item", "delete",
                                  [catalog_resource("item", "delete", str(n)) for n in range(101)])
    assert klaviyo.requests == []


@pytest.fixture
def at_limits(klaviyo: FakeKlaviyo) -> Iterator[KlaviyoClient]:
    client = make_client(klaviyo)
    yield client
    client.close()


def test_bulk_limits_themselves_are_accepted(klaviyo: FakeKlaviyo,
                                             at_limits: KlaviyoClient) -> None:
    at_limits.create_event_bulk_job(
        [{"profile": {"external_id": "a"}, "events": [event("E", str(n)) for n in range(1000)]}])
    at_limits.create_catalog_bulk_job(
        "category", "create",
        [catalog_resource("category", "create", str(n), {"name": "n"}) for n in range(100)])
    assert [r.status for r in klaviyo.requests] == [202, 202]
    assert len(klaviyo.events) == 1000 and len(klaviyo.categories) == 100


@pytest.mark.parametrize(("value", "quoted"), [
    ("ada@example.com", '"ada@example.com"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("tab\there\x08", '"tab\\there\\b"'),  # raw control characters are not JSON: Klaviyo refuses
    ("Zoë", '"Zoë"'),
])
def test_filter_values_are_json_strings(value: str, quoted: str) -> None:
    from shared.klaviyo.client import filter_string

    assert filter_string(value) == quoted
    assert json.loads(filter_string(value)) == value
