"""One bad record never takes anything else down (issue 14 §4): lone UTF-16 surrogates, an
unexpected exception while mapping one bulk record, event times Klaviyo would refuse."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared import jsontext
from shared.bulk.exporters import customers as customers_exporter
from shared.bulk.exporters import orders as orders_exporter
from shared.bulk.exporters.customers import CustomersExporter
from shared.bulk.exporters.orders import OrdersExporter
from shared.errors import DeadlineExceeded
from shared.http import encode_json
from shared.klaviyo.batches import RecordError
from shared.mapping.events import EARLIEST_EVENT_TIME, accepted_time
from tests.test_bulk_exporters import customer_doc, order_doc, posts, run_all
from tests.test_realtime_customers import CUSTOMER, customer_created, profile_imports
from tests.test_realtime_orders import bodies, order_created, seed

LONE = "\ud800"


# ---- surrogates --------------------------------------------------------------------------------

def test_jsontext_replaces_lone_surrogates_only() -> None:
    raw = json.dumps({"a": f"x{LONE}y", f"k{LONE}": ["\udfff", "\U0001f600"], "n": 1})
    assert "\\ud800" in raw  # valid JSON, which json.loads accepts as it is
    assert jsontext.loads(raw) == {"a": "x\ufffdy", "k\ufffd": ["\ufffd", "\U0001f600"],
                                   "n": 1}
    assert jsontext.loads(raw.encode()) == jsontext.loads(raw)
    # a valid pair written as escapes stays the character it encodes
    assert jsontext.loads('"\\ud83d\\ude00"') == "\U0001f600"
    assert jsontext.loads('["\\uD800", "\\uDBFF", 2.5, null, true]') == [
        "\ufffd", "\ufffd", 2.5, None, True]
    assert jsontext.dumps({"a": LONE, "b": "é"}) == '{"a":"\ufffd","b":"é"}'.encode()
    assert jsontext.dumps({"a": [1, 2]}, separators=(", ", ": ")) == b'{"a": [1, 2]}'
    assert encode_json({"name": f"Jo{LONE}"}).decode() == '{"name":"Jo\ufffd"}'
    with pytest.raises(ValueError):
        jsontext.loads("{")


def test_lone_surrogate_in_a_customer_is_sent_safely(realtime: Any, ct: Any, klaviyo: Any) -> None:
    customer = {**copy.deepcopy(CUSTOMER), "firstName": f"Ja{LONE}ne",
                "lastName": f"D{LONE}e"}
    ct.add("customers", customer)
    # the delivery's own copy of the customer carries it too
    assert realtime.deliver(customer_created(customer)) == 200
    (sent,) = profile_imports(klaviyo)
    attributes = sent.json["data"]["attributes"]
    assert attributes["first_name"] == "Ja\ufffdne" and attributes["last_name"] == "D\ufffde"


def test_lone_surrogate_in_one_customer_does_not_fail_a_bulk_batch(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any,
) -> None:
    for i in range(12):
        ct.add("customers", customer_doc(i, **({"firstName": LONE} if i == 0 else {})))
    totals = run_all(CustomersExporter(ct_client, klaviyo_client))
    assert (totals.read, totals.sent, totals.failed) == (12, 12, 0)
    (request,) = posts(klaviyo, "/api/profile-bulk-import-jobs")
    first = request.json["data"]["attributes"]["profiles"]["data"][0]["attributes"]
    assert first["external_id"] == "c00000" and first["first_name"] == "\ufffd"


def test_lone_surrogate_in_an_order_reaches_klaviyo_replaced(
    make_realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    order = seed(ct, orderNumber=f"A-{LONE}")
    realtime = make_realtime()
    assert realtime.deliver(order_created(order)) == 200
    placed = [b for b in bodies(klaviyo)
              if b["data"]["attributes"]["metric"]["data"]["attributes"]["name"] == "Placed Order"]
    assert placed and all(
        "\ufffd" in json.dumps(b["data"]["attributes"]["properties"], ensure_ascii=False)
        for b in placed)


# ---- an unexpected exception in one bulk record -----------------------------------------------

def test_unexpected_exception_mapping_one_customer_is_that_records_error(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = customers_exporter.map_profile

    def buggy(customer: Any, **kwargs: Any) -> Any:  # a bug that only one record's data hits
        if customer.id == "c00004":
            raise ZeroDivisionError("boom")
        return real(customer, **kwargs)

    monkeypatch.setattr(customers_exporter, "map_profile", buggy)
    for i in range(9):
        ct.add("customers", customer_doc(i))
    totals = run_all(CustomersExporter(ct_client, klaviyo_client))
    assert (totals.read, totals.sent, totals.failed) == (9, 8, 1)
    assert totals.errors == [RecordError("c00004", None, "unexpected_ZeroDivisionError")]
    assert len(klaviyo.profiles) == 8


def test_outage_while_mapping_still_fails_the_batch(
    ct: Any, ct_client: Any, klaviyo_client: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only an unexpected exception is the record's: an outage stays the batch's (retried).
    def late(customer: Any, **kwargs: Any) -> Any:
        raise DeadlineExceeded("no time left")

    monkeypatch.setattr(customers_exporter, "map_profile", late)
    ct.add("customers", customer_doc(1))
    with pytest.raises(DeadlineExceeded):
        run_all(CustomersExporter(ct_client, klaviyo_client))


def test_unexpected_exception_mapping_one_order_is_that_records_error(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = orders_exporter.order_events

    def buggy(order: Any, *args: Any, **kwargs: Any) -> Any:
        if order.id == "o00002":
            raise TypeError("boom")
        return real(order, *args, **kwargs)

    monkeypatch.setattr(orders_exporter, "order_events", buggy)
    for i in range(5):
        ct.add("orders", order_doc(i, lines=1))
    totals = run_all(OrdersExporter(ct_client, klaviyo_client))
    assert (totals.read, totals.sent, totals.failed) == (5, 4, 1)
    assert totals.errors == [RecordError("o00002", None, "unexpected_TypeError")]


# ---- event time --------------------------------------------------------------------------------

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("given, sent", [
    ("2026-03-01T10:00:00.000Z", "2026-03-01T10:00:00.000Z"),
    ("1970-01-01T00:00:00.000Z", "1991-01-01T00:00:00.000Z"),
    ("1990-12-31T23:59:59.999Z", "1991-01-01T00:00:00.000Z"),
    ("1991-01-01T00:00:00.000Z", "1991-01-01T00:00:00.000Z"),
    ("2027-05-31T12:00:00.000Z", "2027-05-31T12:00:00.000Z"),  # 364 days ahead: kept
    ("2027-05-31T12:00:00.001Z", "2027-05-31T12:00:00.000Z"),
    ("2099-01-01T00:00:00.000Z", "2027-05-31T12:00:00.000Z"),
    ("2026-03-01T10:00:00", "2026-03-01T10:00:00"),  # no zone: UTC, in range, unchanged
    ("1980-01-01T00:00:00", "1991-01-01T00:00:00.000Z"),
    ("not a time", "not a time"),
])
def test_event_time_is_clamped_into_klaviyos_range(given: str, sent: str) -> None:
    assert accepted_time(given, NOW) == sent
    assert EARLIEST_EVENT_TIME.year == 1991


def test_event_time_default_now_is_the_clock() -> None:
    far = "2999-01-01T00:00:00.000Z"
    clamped = datetime.fromisoformat(accepted_time(far).replace("Z", "+00:00"))
    ahead = clamped - datetime.now(UTC)
    assert 363 < ahead.total_seconds() / 86400 <= 364


def test_order_dated_out_of_range_is_sent_with_an_accepted_time(
    make_realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    order = seed(ct, createdAt="1970-01-01T00:00:00.000Z")
    realtime = make_realtime()
    assert realtime.deliver(order_created(order)) == 200
    times = {b["data"]["attributes"]["time"] for b in bodies(klaviyo)}
    assert times == {"1991-01-01T00:00:00.000Z"}


def test_bulk_orders_with_out_of_range_times_go_in_one_accepted_request(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any,
) -> None:
    dates = ["1985-05-05T00:00:00.000Z", "2025-03-01T10:00:00.000Z", "2199-01-01T00:00:00.000Z"]
    for i, date in enumerate(dates):
        ct.add("orders", order_doc(i, lines=1, createdAt=date))
    totals = run_all(OrdersExporter(ct_client, klaviyo_client))
    assert (totals.read, totals.sent, totals.failed) == (3, 3, 0)
    (request,) = posts(klaviyo, "/api/event-bulk-create-jobs")
    sent = [event["attributes"]["time"]
            for entry in request.json["data"]["attributes"]["events-bulk-create"]["data"]
            for event in entry["attributes"]["events"]["data"]]
    latest = datetime.now(UTC).year + 1
    assert all("1991-01-01" <= t < f"{latest + 1}" for t in sent), sent
