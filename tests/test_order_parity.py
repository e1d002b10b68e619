"""Bulk ↔ realtime parity: for every order state × shipment state × refund, the bulk order
export records in Klaviyo exactly the events the realtime function records for the same order.

Both run for real: the realtime function through functions-framework with CloudEvents (one
delivery per commercetools message the order's history produced), the bulk exporter against the
same commercetools fake; Klaviyo is the fake, compared by what it stored (its dedup by
unique_id is Klaviyo's). Only `backfill` differs, by design (bulk events must not fire flows).
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest

from shared.bulk.exporters.orders import OrdersExporter
from shared.config import get_settings
from shared.deadline import Deadline
from shared.mapping.orders import OrderMappingConfig

ORDER_STATES = ("Open", "Confirmed", "Complete", "Cancelled")
SHIPMENT_STATES = (None, "Pending", "Ready", "Shipped", "Delivered", "Delayed", "Partial",
                   "Backorder")
REFUNDS = ("none", "pending", "success", "two")
COMBOS = list(itertools.product(ORDER_STATES, SHIPMENT_STATES, REFUNDS))
CREATED, MODIFIED = "2026-03-01T10:00:00.000Z", "2026-03-04T08:30:00.000Z"
_seq = itertools.count(1)


def eur(cents: int) -> dict[str, Any]:
    return {"type": "centPrecision", "currencyCode": "EUR", "centAmount": cents,
            "fractionDigits": 2}


CATEGORIES = [
    {"id": "c-women", "version": 1, "name": {"en": "Women"}, "slug": {"en": "women"},
     "ancestors": []},
    {"id": "c-pants", "version": 1, "name": {"en": "Pants", "de": "Hosen"},
     "slug": {"en": "pants"}, "parent": {"typeId": "category", "id": "c-women"},
     "ancestors": [{"typeId": "category", "id": "c-women"}]},
]
PRODUCT_DATA = {
    "name": {"en": "Jeans"}, "slug": {"en": "jeans", "de": "jeans-de"},
    "categories": [{"typeId": "category", "id": "c-pants"}],
    "attributes": [{"name": "brand", "value": "Acme"}],
    "masterVariant": {"id": 1, "sku": "J-1", "prices": [], "images": [], "attributes": []},
    "variants": [],
}
PRODUCT = {"id": "p-1", "version": 1, "key": "jeans",
           "productType": {"typeId": "product-type", "id": "pt"},
           "masterData": {"published": True, "hasStagedChanges": False,
                          "current": PRODUCT_DATA, "staged": PRODUCT_DATA}}


def transaction(tid: str, kind: str, state: str, cents: int, day: int) -> dict[str, Any]:
    return {"id": tid, "type": kind, "state": state, "amount": eur(cents),
            "timestamp": f"2026-03-0{day}T12:00:00.000Z"}


def payment(i: int, refund: str) -> dict[str, Any]:
    transactions = [transaction(f"t{i}-charge", "Charge", "Success", 9500, 1)]
    if refund == "pending":
        transactions.append(transaction(f"t{i}-r1", "Refund", "Pending", 1000, 2))
    if refund in ("success", "two"):
        transactions.append(transaction(f"t{i}-r1", "Refund", "Success", 1000, 2))
    if refund == "two":
        transactions.append(transaction(f"t{i}-r2", "Refund", "Success", 500, 3))
    return {"id": f"pay-{i}", "version": 1, "amountPlanned": eur(9500),
            "transactions": transactions}


def order(i: int, state: str, shipment: str | None) -> dict[str, Any]:
    address = {"firstName": "Ann", "streetName": "Main St", "streetNumber": "1",
               "postalCode": "10001", "city": "New York", "state": "NY", "country": "US"}
    doc: dict[str, Any] = {
        "id": f"order-{i:03d}", "version": 3, "orderNumber": f"N-{i}",
        "customerId": f"cust-{i % 5}", "customerEmail": f"buyer{i % 5}@example.org",
        "createdAt": CREATED, "lastModifiedAt": MODIFIED, "orderState": state,
        "totalPrice": eur(9500),
        "taxedPrice": {"totalNet": eur(7983), "totalGross": eur(9500), "totalTax": eur(1517)},
        "lineItems": [{
            "id": f"li-{i}-1", "productId": "p-1", "productKey": "jeans",
            "name": {"en": "Jeans", "de": "Jeans DE"}, "productSlug": {"en": "jeans"},
            "variant": {"id": 1, "sku": "J-1", "attributes": [
                {"name": "size", "value": "32"},
                {"name": "color", "value": {"key": "blue", "label": {"en": "Blue"}}}]},
            "price": {"value": eur(4500)}, "quantity": 2, "totalPrice": eur(9000),
        }],
        "customLineItems": [{"id": f"cli-{i}", "name": {"en": "Gift wrap"}, "slug": "wrap",
                             "money": eur(0), "totalPrice": eur(0), "quantity": 1}],
        "shippingInfo": {"shippingMethodName": "Standard", "price": eur(500)},
        "billingAddress": address, "shippingAddress": address,
        "paymentInfo": {"payments": [{"typeId": "payment", "id": f"pay-{i}"}]},
    }
    if shipment is not None:
        doc["shipmentState"] = shipment
    return doc


def message(type_: str, resource: str, resource_id: str, **fields: Any) -> dict[str, Any]:
    seq = next(_seq)
    return {"notificationType": "Message", "projectKey": "test-project", "id": f"pm-{seq}",
            "version": 1, "sequenceNumber": seq,
            "resource": {"typeId": resource, "id": resource_id}, "resourceVersion": 3,
            "type": type_, "createdAt": MODIFIED, "lastModifiedAt": MODIFIED, **fields}


def history(doc: dict[str, Any], pay: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages commercetools sent on the way to the order's current state (state messages
    at its last change, so their events carry the time the bulk export gives them)."""
    deliveries = [message("OrderCreated", "order", doc["id"], order=doc)]
    if doc["orderState"] != "Open":
        deliveries.append(message("OrderStateChanged", "order", doc["id"],
                                  orderState=doc["orderState"], oldOrderState="Open"))
    if doc.get("shipmentState"):
        deliveries.append(message("OrderShipmentStateChanged", "order", doc["id"],
                                  shipmentState=doc["shipmentState"]))
    for tx in pay["transactions"]:
        if tx["type"] == "Refund":
            deliveries.append(message("PaymentTransactionStateChanged", "payment", pay["id"],
                                      transactionId=tx["id"], state=tx["state"]))
    return deliveries


def recorded(klaviyo: Any) -> list[tuple[Any, ...]]:
    """What Klaviyo stored: every event with its person, properties, value and time."""
    rows = []
    for event in klaviyo.events:
        person = klaviyo.profiles[event["profile_id"]]
        who = (person.get("email"), person.get("external_id"))
        rows.append((event["metric"], event["unique_id"], event["time"], who,
                     json.dumps(event["properties"], sort_keys=True), event["value"],
                     event["value_currency"]))
    return sorted(rows)


@pytest.mark.parametrize("env", [
    {},
    {"PLACED_ORDER_STATES": "Confirmed,Complete"},
], ids=["default", "placed-order-states"])
def test_bulk_export_records_what_realtime_records(
    make_realtime: Any, ct: Any, klaviyo: Any, ct_client: Any, klaviyo_client: Any,
    env: dict[str, str],
) -> None:
    for category in CATEGORIES:
        ct.add("categories", copy.deepcopy(category))
    ct.add("products", copy.deepcopy(PRODUCT))
    orders = []
    for i, (state, shipment, refund) in enumerate(COMBOS):
        pay = payment(i, refund)
        ct.add("payments", pay)
        orders.append((ct.add("orders", order(i, state, shipment)), pay))
    realtime = make_realtime(PRODUCT_URL_TEMPLATE="https://shop.example/{slug}",
                             ORDER_BRAND_ATTRIBUTE="brand", **env)

    for doc, pay in orders:
        for delivery in history(doc, pay):
            assert realtime.deliver(delivery) == 200
    live = recorded(klaviyo)
    assert not any(e["backfill"] for e in klaviyo.events)

    klaviyo.reset()
    exporter = OrdersExporter(ct_client, klaviyo_client,
                              config=OrderMappingConfig.from_settings(get_settings()))
    after = None
    while True:
        result = exporter.run_batch(after=after, ids=None, deadline=Deadline.after(60))
        assert result.failed == 0
        if result.done:
            break
        after = result.cursor
    assert all(e["backfill"] is True for e in klaviyo.events)

    assert recorded(klaviyo) == live
    # The comparison is not vacuous: every kind of event is among them.
    metrics = {row[0] for row in live}
    assert metrics == {"Placed Order", "Ordered Product", "Fulfilled Order", "Cancelled Order",
                       "Refunded Order"}
    placed = next(json.loads(row[4]) for row in live if row[0] == "Placed Order")
    assert placed["Brands"] == ["Acme"] and placed["TotalTax"] == 15.17
    assert placed["Items"][0]["Attributes"] == {"size": "32", "color": "Blue"}
    assert placed["BillingAddress"]["Region"] == "NY"
    if env:
        assert {row[1].split(":")[0] for row in live if row[0] == "Placed Order"} == {
            order(i, *c[:2])["id"] for i, c in enumerate(COMBOS)
            if c[0] in ("Confirmed", "Complete")}
