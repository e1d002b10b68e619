"""The Klaviyo fake's contract check (tests/fakes/klaviyo/spec.py): each rule refuses what
Klaviyo's OpenAPI document does not allow and lets through what it allows, and the suite-wide
guard fails a test whose requests are refused."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.datastructures import MultiDict

from tests.fakes.klaviyo import ApiFailure, FakeKlaviyo
from tests.fakes.klaviyo.fixtures import refusals
from tests.fakes.klaviyo.spec import SPEC_FILE, Limits, contract

JSONAPI = "application/vnd.api+json"
HEADERS = {"revision": "2026-07-15", "content-type": JSONAPI, "accept": JSONAPI}
ROOT = Path(__file__).resolve().parents[1]

EVENT: dict[str, Any] = {"data": {"type": "event", "attributes": {
    "properties": {"OrderId": "o1"}, "time": "2026-01-01T12:00:00+00:00", "value": 9.5,
    "value_currency": "EUR", "unique_id": "o1",
    "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
    "profile": {"data": {"type": "profile", "attributes": {
        "email": "a@shop.example", "phone_number": "+4915112345678"}}},
}}}
ITEM: dict[str, Any] = {"data": {"type": "catalog-item", "attributes": {
    "external_id": "p1", "title": "Shirt", "description": "A shirt",
    "url": "https://shop.example/p1", "custom_metadata": {"Colour": "red", "Sizes": ["S", "M"]},
}}}
PROFILE: dict[str, Any] = {"data": {"type": "profile", "attributes": {
    "email": "a@shop.example", "first_name": "Ann", "properties": {"Tier": "gold"}}}}


def check(method: str, path: str, body: Any = None, *, query: dict[str, str] | None = None,
          headers: dict[str, str] | None = None, raw: bytes | None = None) -> str:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    op = contract().check_request(method, path, MultiDict(query or {}),
                                  {**HEADERS, **(headers or {})}, data, body)
    return op.operation_id


def refusal(method: str, path: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ApiFailure) as info:
        check(method, path, body, **kwargs)
    (error, *_) = info.value.errors
    return {"status": info.value.status, **error}


def edited(doc: dict[str, Any], pointer: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = pointer.strip("/").split("/")
    node = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    return doc


def bulk_events(per_profile: int, profiles: int = 1) -> dict[str, Any]:
    entries = [{"type": "event-bulk-create", "attributes": {
        "profile": {"data": {"type": "profile", "attributes": {"email": f"p{p}@shop.example"}}},
        "events": {"data": [{"type": "event", "attributes": {
            "properties": {}, "unique_id": f"{p}-{i}",
            "metric": {"data": {"type": "metric", "attributes": {"name": "Ordered Product"}}},
        }} for i in range(per_profile)]}}} for p in range(profiles)]
    return {"data": {"type": "event-bulk-create-job",
                     "attributes": {"events-bulk-create": {"data": entries}}}}


# -- the baseline requests are valid (so each refusal below is the edit's doing) ---------------

def test_valid_requests_pass() -> None:
    assert check("POST", "/api/events", EVENT) == "create_event"
    assert check("POST", "/api/catalog-items", ITEM) == "create_catalog_item"
    assert check("POST", "/api/profile-import", PROFILE) == "create_or_update_profile"
    assert check("POST", "/api/event-bulk-create-jobs", bulk_events(2, 2)) == "bulk_create_events"
    assert check("GET", "/api/profiles", query={
        "filter": 'equals(email,"a@shop.example")', "page[size]": "100"}) == "get_profiles"
    assert check("GET", "/api/catalog-items/%24custom%3A%3A%3A%24default%3A%3A%3Ap1/variants",
                 query={"fields[catalog-variant]": "sku,title"}) == "get_variants_for_catalog_item"


# -- path, method, headers ----------------------------------------------------------------------

def test_undeclared_path_and_method() -> None:
    assert refusal("GET", "/api/metrics")["status"] == 404
    assert refusal("DELETE", "/api/events")["status"] == 405
    assert refusal("POST", "/api/profile-import/extra", PROFILE)["status"] == 404


def test_headers() -> None:
    without = {k: v for k, v in HEADERS.items() if k != "revision"}
    with pytest.raises(ApiFailure) as info:
        contract().check_request("POST", "/api/events", MultiDict(), without,
                                 json.dumps(EVENT).encode(), EVENT)
    assert (info.value.status, info.value.errors[0]["source"]) == (400, {"parameter": "revision"})
    assert refusal("POST", "/api/events", EVENT, headers={"revision": "July"})["status"] == 400
    assert refusal("POST", "/api/events", EVENT,
                   headers={"content-type": "application/json"})["status"] == 415
    assert refusal("POST", "/api/events", EVENT, headers={"accept": "text/html"})["status"] == 406
    assert check("POST", "/api/events", EVENT, headers={"accept": "*/*"})
    assert check("POST", "/api/events", EVENT,
                 headers={"content-type": f"{JSONAPI}; charset=utf-8"})


# -- query parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "parameter"), [
    ({"page[size]": "0"}, "page[size]"),
    ({"page[size]": "101"}, "page[size]"),
    ({"page[size]": "ten"}, "page[size]"),
    ({"fields[profile]": "email,shoe_size"}, "fields[profile]"),
    ({"sort": "shoe_size"}, "sort"),
    ({"page[offset]": "2"}, "page[offset]"),
    ({"filter": 'equals(anonymous_id,"x")'}, "filter"),
    ({"filter": 'contains(email,"shop")'}, "filter"),
    ({"filter": "equals(email"}, "filter"),
])
def test_query_parameters(query: dict[str, str], parameter: str) -> None:
    error = refusal("GET", "/api/profiles", query=query)
    assert (error["status"], error["source"]) == (400, {"parameter": parameter})


def test_query_parameters_the_spec_allows() -> None:
    assert check("GET", "/api/profiles", query={"page[size]": "1", "sort": "-created",
                                                "fields[profile]": "email,external_id",
                                                "filter": 'any(email,["a@x.example"])'})
    assert check("GET", "/api/catalog-items", query={"filter": 'any(ids,["a","b"])'})
    assert refusal("GET", "/api/catalog-items",
                   query={"filter": 'equals(sku,"x")'})["source"] == {"parameter": "filter"}


# -- body schema --------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "body", "pointer"), [
    # members the schema does not declare (additionalProperties, applied to every listed object)
    ("/api/events", edited(EVENT, "/data/attributes/colour", "red"), "/data/attributes/colour"),
    ("/api/events", edited(EVENT, "/data/attributes/profile/data/attributes/company", "Acme"),
     "/data/attributes/profile/data/attributes/company"),
    ("/api/profile-import", edited(PROFILE, "/data/attributes/location", {"state": "NY"}),
     "/data/attributes/location/state"),
    ("/api/profile-import", edited(PROFILE, "/data/relationships", {}), "/data/relationships"),
    # required members, types, enums
    ("/api/catalog-items", edited(ITEM, "/data/attributes/url", None), "/data/attributes/url"),
    ("/api/events", edited(EVENT, "/data/type", "events"), "/data/type"),
    ("/api/events", edited(EVENT, "/data/attributes/value", "9.50"), "/data/attributes/value"),
    ("/api/catalog-items", edited(ITEM, "/data/attributes/integration_type", "shopify"),
     "/data/attributes/integration_type"),
    # formats
    ("/api/events", edited(EVENT, "/data/attributes/time", "2026-01-01T12:00:00"),
     "/data/attributes/time"),
    ("/api/events", edited(EVENT, "/data/attributes/time", "01/01/2026"), "/data/attributes/time"),
    ("/api/events", edited(EVENT, "/data/attributes/value_currency", "EURO"),
     "/data/attributes/value_currency"),
    ("/api/events", edited(EVENT, "/data/attributes/value_currency", "eur"),
     "/data/attributes/value_currency"),
    ("/api/events", edited(EVENT, "/data/attributes/profile/data/attributes/phone_number",
                           "0151 1234567"),
     "/data/attributes/profile/data/attributes/phone_number"),
])
def test_body_schema(path: str, body: dict[str, Any], pointer: str) -> None:
    if pointer == "/data/attributes/url":
        del body["data"]["attributes"]["url"]
    error = refusal("POST", path, body)
    assert (error["status"], error["source"]) == (400, {"pointer": pointer}), error["detail"]


def test_free_form_objects_stay_open_and_null_is_allowed_where_nullable() -> None:
    assert check("POST", "/api/events", edited(EVENT, "/data/attributes/properties",
                                               {"Any": {"nested": [1, {"x": None}]}}))
    assert check("POST", "/api/events", edited(EVENT, "/data/attributes/value", None))
    assert check("POST", "/api/profile-import", edited(PROFILE, "/data/attributes/first_name",
                                                       None))


# -- limits stated in prose ----------------------------------------------------------------------

def test_event_time_range() -> None:
    now = datetime.now(UTC)
    for ok in ("1990-01-01T00:00:01+00:00", (now + timedelta(days=364)).isoformat()):
        assert check("POST", "/api/events", edited(EVENT, "/data/attributes/time", ok))
    for bad in ("1970-01-01T00:00:00+00:00", "1990-01-01T00:00:00Z",
                (now + timedelta(days=366)).isoformat()):
        error = refusal("POST", "/api/events", edited(EVENT, "/data/attributes/time", bad))
        assert error["source"] == {"pointer": "/data/attributes/time"}, bad
    bulk = bulk_events(1)
    attrs = bulk["data"]["attributes"]["events-bulk-create"]["data"][0]["attributes"]
    attrs["events"]["data"][0]["attributes"]["time"] = "1989-12-31T23:59:59+00:00"
    assert refusal("POST", "/api/event-bulk-create-jobs", bulk)["source"]["pointer"].endswith(
        "/events/data/0/attributes/time")


def test_event_property_count_and_string_size() -> None:
    assert check("POST", "/api/events", edited(EVENT, "/data/attributes/properties",
                                               {f"p{i}": i for i in range(400)}))
    error = refusal("POST", "/api/events", edited(EVENT, "/data/attributes/properties",
                                                  {f"p{i}": i for i in range(401)}))
    assert error["source"] == {"pointer": "/data/attributes/properties"}
    assert check("POST", "/api/events", edited(EVENT, "/data/attributes/properties",
                                               {"Big": "é" * (50 * 1024)}))
    error = refusal("POST", "/api/events", edited(EVENT, "/data/attributes/properties",
                                                  {"Items": [{"Big": "x" * (100 * 1024 + 1)}]}))
    assert error["source"] == {"pointer": "/data/attributes/properties/Items/0/Big"}


def test_metric_name_length() -> None:
    name = "/data/attributes/metric/data/attributes/name"
    assert check("POST", "/api/events", edited(EVENT, name, "x" * 127))
    assert refusal("POST", "/api/events", edited(EVENT, name, "x" * 128))["source"] == {
        "pointer": name}


def test_catalog_custom_metadata_flat_and_sized() -> None:
    meta = "/data/attributes/custom_metadata"
    assert refusal("POST", "/api/catalog-items", edited(ITEM, meta, {"a": {"b": 1}}))[
        "source"] == {"pointer": f"{meta}/a"}
    assert refusal("POST", "/api/catalog-items", edited(ITEM, meta, {"a": "x" * 110_000}))[
        "source"] == {"pointer": meta}


def test_batch_sizes() -> None:
    assert check("POST", "/api/event-bulk-create-jobs", bulk_events(500, 2))
    error = refusal("POST", "/api/event-bulk-create-jobs", bulk_events(501, 2))
    assert error["source"] == {"pointer": "/data/attributes/events-bulk-create/data"}
    items: dict[str, Any] = {"data": {
        "type": "catalog-item-bulk-create-job",
        "attributes": {"items": {"data": [copy.deepcopy(ITEM["data"]) for _ in range(101)]}}}}
    assert refusal("POST", "/api/catalog-item-bulk-create-jobs", items)["source"] == {
        "pointer": "/data/attributes/items/data"}
    items["data"]["attributes"]["items"]["data"].pop()
    assert check("POST", "/api/catalog-item-bulk-create-jobs", items)


def test_payload_sizes() -> None:
    big = edited(PROFILE, "/data/attributes/properties", {"Notes": "x" * (100 * 1024)})
    assert refusal("POST", "/api/profile-import", big)["source"] == {"pointer": "/data"}
    profiles = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": [
        {"type": "profile", "attributes": {"email": "a@shop.example",
                                           "properties": {"Notes": "x" * (100 * 1024)}}}]}}}}
    assert refusal("POST", "/api/profile-bulk-import-jobs", profiles)["source"] == {
        "pointer": "/data/attributes/profiles/data/0"}
    huge = edited(EVENT, "/data/attributes/properties",
                  {f"p{i}": "x" * (90 * 1024) for i in range(60)})
    assert refusal("POST", "/api/events", huge)["source"] == {"pointer": "/data"}


def test_limits_read_from_the_document() -> None:
    ops = {op.operation_id: op for _, _, by_method in contract().paths
           for op in by_method.values()}
    mb, kb = 1024 * 1024, 1024
    assert ops["bulk_create_events"].limits == Limits(5 * mb, None, 1000, "events", 100 * kb)
    assert ops["bulk_import_profiles"].limits == Limits(5 * mb, 100 * kb, 10_000, "profiles")
    assert ops["create_or_update_profile"].limits == Limits(100 * kb)
    assert ops["create_event"].limits == Limits(5 * mb)
    assert ops["bulk_create_catalog_items"].limits == Limits(5 * mb, None, 100, "catalog items")
    assert ops["bulk_subscribe_profiles"].limits.batch == 1000
    assert ops["bulk_unsubscribe_profiles"].limits.batch == 100
    assert ops["get_catalog_items"].filters == {
        "ids": {"any"}, "category.id": {"equals"}, "title": {"contains"},
        "published": {"equals"}}
    assert json.loads(SPEC_FILE.read_text())["info"]["version"] == "2026-07-15"


# -- answers ------------------------------------------------------------------------------------

def test_answers_are_checked_against_the_declared_responses() -> None:
    c = contract()
    create = c.match("POST", "/api/events")
    assert c.check_response(create, 202, None) == []
    assert c.check_response(create, 400, {"errors": [{
        "id": "1", "code": "invalid", "title": "t", "detail": "d", "source": {}}]}) == []
    assert c.check_response(create, 202, {"data": {}})  # declared without a body
    assert c.check_response(create, 400, {"errors": [{"code": "invalid"}]})  # id, title missing
    items = c.match("GET", "/api/catalog-items")
    assert c.check_response(items, 200, {"data": [], "links": {"self": "https://x/",
                                                              "next": None}})
    assert c.check_response(items, 201, {"data": []})  # not declared


# -- over HTTP: the answer, the record, the guard -----------------------------------------------

@pytest.mark.klaviyo_refusals
def test_refusal_answers_jsonapi_400_with_pointer_and_is_recorded(klaviyo: FakeKlaviyo) -> None:
    resp = requests.post(f"{klaviyo.url}/api/events",
                         data=json.dumps(edited(EVENT, "/data/attributes/time", "1970-01-01T00:00"
                                                ":00+00:00")),
                         headers={**HEADERS, "Authorization": f"Klaviyo-API-Key {klaviyo.api_key}"},
                         timeout=5)
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith(JSONAPI)
    (error,) = resp.json()["errors"]
    assert error["source"] == {"pointer": "/data/attributes/time"}
    assert set(error) >= {"id", "code", "title", "detail"}
    (record,) = klaviyo.requests
    assert record.refused and record.violations and not klaviyo.events
    assert refusals(klaviyo) == [f"POST /api/events → 400: /data/attributes/time {error['detail']}"]


def test_accepted_and_not_found_requests_are_not_refusals(klaviyo: FakeKlaviyo) -> None:
    auth = {**HEADERS, "Authorization": f"Klaviyo-API-Key {klaviyo.api_key}"}
    assert requests.post(f"{klaviyo.url}/api/events", data=json.dumps(EVENT), headers=auth,
                         timeout=5).status_code == 202
    assert requests.get(f"{klaviyo.url}/api/profiles/nope", headers=auth,
                        timeout=5).status_code == 404
    assert refusals(klaviyo) == []


GUARDED = '''
import json, requests
import pytest

EVENT = {"data": {"type": "event", "attributes": {"properties": {}, "colour": "red",
    "metric": {"data": {"type": "metric", "attributes": {"name": "X"}}},
    "profile": {"data": {"type": "profile", "attributes": {"email": "a@shop.example"}}}}}}


def send(klaviyo):
    return requests.post(f"{klaviyo.url}/api/events", data=json.dumps(EVENT), timeout=5,
                         headers={"Authorization": f"Klaviyo-API-Key {klaviyo.api_key}",
                                  "revision": "2026-07-15",
                                  "content-type": "application/vnd.api+json"})


def test_unmarked(klaviyo):
    assert send(klaviyo).status_code == 400


@pytest.mark.klaviyo_refusals
def test_marked(klaviyo):
    assert send(klaviyo).status_code == 400
'''


def test_guard_fails_an_unmarked_test_whose_request_is_refused(tmp_path: Path) -> None:
    (tmp_path / "test_guarded.py").write_text(GUARDED)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
         "tests.fakes.klaviyo", "--rootdir", str(tmp_path), str(tmp_path / "test_guarded.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    out = result.stdout
    assert result.returncode != 0 and "2 passed, 1 error" in out, out
    assert "ERROR" in out and "test_unmarked" in out and "/data/attributes/colour" in out, out


@pytest.mark.klaviyo_refusals
def test_refusals_outlive_a_reset_until_the_guard_sees_them(klaviyo: FakeKlaviyo) -> None:
    auth = {**HEADERS, "Authorization": f"Klaviyo-API-Key {klaviyo.api_key}"}
    requests.post(f"{klaviyo.url}/api/events", headers=auth, timeout=5,
                  data=json.dumps(edited(EVENT, "/data/attributes/colour", "red")))
    klaviyo.reset()  # as a hypothesis test does between examples
    assert not klaviyo.requests
    assert [line.split(" → ")[0] for line in refusals(klaviyo)] == ["POST /api/events"]


def test_a_marker_with_pointers_allows_only_those_refusals(klaviyo: FakeKlaviyo) -> None:
    auth = {**HEADERS, "Authorization": f"Klaviyo-API-Key {klaviyo.api_key}"}
    for pointer, value in (("/data/attributes/time", "1970-01-01T00:00:00+00:00"),
                           ("/data/attributes/colour", "red")):
        requests.post(f"{klaviyo.url}/api/events", headers=auth, timeout=5,
                      data=json.dumps(edited(EVENT, pointer, value)))
    assert len(refusals(klaviyo)) == 2
    (left,) = refusals(klaviyo, ("/attributes/time",))
    assert "/data/attributes/colour" in left
    klaviyo.reset()
    klaviyo.refused_earlier.clear()  # this test's refusals are on purpose
