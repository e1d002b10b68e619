"""Order events end to end: real CloudEvents → realtime function → commercetools and Klaviyo fakes.

Covers every order/payment message the order processors handle, with the exact event bodies
(an order's events in one event-bulk-create-jobs request, a lone event as POST /api/events), plus
redelivery, out-of-order delivery, Klaviyo 429/5xx/400 on either endpoint (the bulk request
falling back to one POST per event) and disabling.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import time
from typing import Any

import pytest

from shared.klaviyo import limiter
from shared.log import JsonFormatter

_seq = itertools.count(1)


def eur(cents: int) -> dict[str, Any]:
    return {"type": "centPrecision", "currencyCode": "EUR", "centAmount": cents,
            "fractionDigits": 2}


WOMEN = {"id": "cat-women", "name": {"en": "Women"}, "ancestors": []}
PANTS = {"id": "cat-pants", "name": {"en": "Pants"}, "parent": {"typeId": "category",
                                                                "id": "cat-women"},
         "ancestors": [{"typeId": "category", "id": "cat-women"}]}
JEANS = {"id": "cat-jeans", "name": {"en": "Jeans"}, "parent": {"typeId": "category",
                                                                "id": "cat-pants"},
         "ancestors": [{"typeId": "category", "id": "cat-women"},
                       {"typeId": "category", "id": "cat-pants"}]}
PRODUCT = {"id": "prod-1", "key": "jeans", "masterData": {"published": True, "current": {
    "name": {"en": "Blue Jeans"}, "slug": {"en": "blue-jeans"},
    "categories": [{"typeId": "category", "id": "cat-jeans"}],
    "masterVariant": {"id": 1, "sku": "JEANS-32"}, "variants": []}}}

ORDER: dict[str, Any] = {
    "id": "order-1",
    "version": 3,
    "orderNumber": "A-1001",
    "customerId": "cust-1",
    "customerEmail": "jane@example.org",
    "createdAt": "2026-03-01T10:00:00.000Z",
    "lastModifiedAt": "2026-03-01T10:00:00.000Z",
    "orderState": "Open",
    "shipmentState": "Pending",
    "totalPrice": eur(10400),
    "lineItems": [
        {"id": "li-1", "productId": "prod-1", "name": {"en": "Blue Jeans"},
         "productSlug": {"en": "blue-jeans"},
         "variant": {"id": 1, "sku": "JEANS-32",
                     "images": [{"url": "https://img.example/jeans.png",
                                 "dimensions": {"w": 1, "h": 1}}]},
         "price": {"value": eur(5000)}, "quantity": 2, "totalPrice": eur(9000),
         "discountedPricePerQuantity": [{"quantity": 2, "discountedPrice": {
             "value": eur(4500), "includedDiscounts": [
                 {"discount": {"typeId": "cart-discount", "id": "cd"},
                  "discountedAmount": eur(500)}]}}]},
        {"id": "li-2", "productId": "prod-gone", "name": {"en": "Old Socks"},
         "variant": {"id": 1, "sku": "SOCKS"}, "price": {"value": eur(400)}, "quantity": 1,
         "totalPrice": eur(400)},
    ],
    "customLineItems": [
        {"id": "cli-1", "name": {"en": "Gift wrap"}, "slug": "gift-wrap", "money": eur(300),
         "totalPrice": eur(300), "quantity": 1},
    ],
    "shippingInfo": {"shippingMethodName": "Express", "price": eur(700)},
    "discountCodes": [{"discountCode": {"typeId": "discount-code", "id": "dc-1"},
                       "state": "MatchesCart"}],
    "billingAddress": {"streetNumber": "23", "streetName": "High Road", "postalCode": "SW1A 1AA",
                       "city": "London", "country": "GB", "firstName": "Jane"},
    "paymentInfo": {"payments": [{"typeId": "payment", "id": "pay-1"}]},
    "custom": {"type": {"typeId": "type", "id": "t"}, "fields": {"giftNote": "Happy"}},
}

# A registered customer's order events name the profile by external_id only (issue 14 §2).
PROFILE = {"external_id": "cust-1"}
JEANS_ITEM = {
    "ProductID": "prod-1", "SKU": "JEANS-32", "ProductName": "Blue Jeans", "Quantity": 2,
    "ItemPrice": 50.0, "RowTotal": 90.0, "ProductURL": "https://shop.example/p/blue-jeans",
    "ImageURL": "https://img.example/jeans.png",
    "Categories": ["Women", "Women > Pants", "Women > Pants > Jeans"], "DiscountValue": 10.0,
}
# The product was deleted: no categories, and no URL rather than a URL with a hole.
SOCKS_ITEM = {"ProductID": "prod-gone", "SKU": "SOCKS", "ProductName": "Old Socks",
              "Quantity": 1, "ItemPrice": 4.0, "RowTotal": 4.0}
GIFT_ITEM = {"ProductName": "Gift wrap", "Quantity": 1, "ItemPrice": 3.0, "RowTotal": 3.0}
ORDER_PROPERTIES = {
    "OrderId": "order-1",
    "OrderNumber": "A-1001",
    "ItemNames": ["Blue Jeans", "Old Socks", "Gift wrap"],
    "Categories": ["Women", "Women > Pants", "Women > Pants > Jeans"],
    "Items": [JEANS_ITEM, SOCKS_ITEM, GIFT_ITEM],
    "DiscountValue": 10.0,
    "ShippingMethod": "Express",
    "ShippingValue": 7.0,
    "BillingAddress": {"FirstName": "Jane", "Address1": "23, High Road", "City": "London",
                       "CountryCode": "GB", "Zip": "SW1A 1AA"},
}
URL_ENV = {"PRODUCT_URL_TEMPLATE": "https://shop.example/p/{slug}"}


def event_body(metric: str, properties: dict[str, Any], *, unique_id: str, value: float,
               time: str = "2026-03-01T10:00:00.000Z", currency: str = "EUR",
               profile: dict[str, Any] = PROFILE) -> dict[str, Any]:
    return {"data": {"type": "event", "attributes": {
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        "profile": {"data": {"type": "profile", "attributes": profile}},
        "properties": properties,
        "time": time,
        "unique_id": unique_id,
        "value": value,
        "value_currency": currency,
    }}}


PLACED = event_body(
    "Placed Order", ORDER_PROPERTIES, unique_id="order-1:placed", value=104.0,
)
ORDERED_PRODUCTS = [
    event_body("Ordered Product", {"OrderId": "order-1", **JEANS_ITEM}, unique_id="li-1",
               value=90.0),
    event_body("Ordered Product", {"OrderId": "order-1", **SOCKS_ITEM}, unique_id="li-2",
               value=4.0),
    event_body("Ordered Product", {"OrderId": "order-1", **GIFT_ITEM}, unique_id="cli-1",
               value=3.0),
]


def seed(ct: Any, **order_overrides: Any) -> dict[str, Any]:
    for category in (WOMEN, PANTS, JEANS):
        ct.add("categories", copy.deepcopy(category))
    ct.add("products", copy.deepcopy(PRODUCT))
    return ct.add("orders", {**copy.deepcopy(ORDER), **order_overrides})


def message(type_: str, *, resource: str = "order", resource_id: str = "order-1",
            created_at: str = "2026-03-01T10:00:00.500Z", **fields: Any) -> dict[str, Any]:
    seq = next(_seq)
    return {
        "notificationType": "Message", "projectKey": "test-project", "id": f"msg-{seq}",
        "version": 1, "sequenceNumber": seq, "resource": {"typeId": resource, "id": resource_id},
        "resourceVersion": seq, "resourceUserProvidedIdentifiers": {}, "type": type_,
        "createdAt": created_at, "lastModifiedAt": created_at, **fields,
    }


def order_created(order: dict[str, Any] | None = None) -> dict[str, Any]:
    return message("OrderCreated", order=order or ORDER)


def state_changed(state: str, old: str = "Open", **extra: Any) -> dict[str, Any]:
    return message("OrderStateChanged", orderState=state, oldOrderState=old,
                   created_at="2026-03-03T09:00:00.000Z", **extra)


EVENTS = "/api/events"
BULK = "/api/event-bulk-create-jobs"


def event_posts(klaviyo: Any) -> list[Any]:
    return klaviyo.requests_to("POST", EVENTS)


def bulk_posts(klaviyo: Any) -> list[Any]:
    return klaviyo.requests_to("POST", BULK)


def writes(klaviyo: Any) -> list[tuple[str, int | None, int]]:
    """(path, status, events carried) of every event request, in order."""
    return [(r.path, r.status, len(carried(r))) for r in klaviyo.requests
            if r.method == "POST" and r.path in (EVENTS, BULK)]


def carried(request: Any) -> list[dict[str, Any]]:
    """The events a request carried, each as the POST /api/events body it stands for (a bulk
    entry's profile put back into each of its events)."""
    if request.path == EVENTS:
        return [request.json]
    entries = request.json["data"]["attributes"]["events-bulk-create"]["data"]
    return [{"data": {"type": "event", "attributes": {**event["attributes"],
                                                      "profile": entry["attributes"]["profile"]}}}
            for entry in entries for event in entry["attributes"]["events"]["data"]]


def bodies(klaviyo: Any) -> list[Any]:
    """Every event sent, by either endpoint, in order (failed requests included)."""
    return [body for r in klaviyo.requests if r.method == "POST" and r.path in (EVENTS, BULK)
            for body in carried(r)]


def stored(klaviyo: Any) -> list[tuple[str, str]]:
    """(metric, unique_id) of the events the fake Klaviyo recorded (one per dedup key)."""
    return sorted((e["metric"], e["unique_id"]) for e in klaviyo.events)


# ---- Placed Order + Ordered Product -------------------------------------------------------------


@pytest.mark.parametrize("structured", [False, True], ids=["binary", "structured"])
def test_order_created_sends_placed_order_and_ordered_products(
    make_realtime: Any, ct: Any, klaviyo: Any, structured: bool
) -> None:
    seed(ct)
    realtime = make_realtime(**URL_ENV)

    assert realtime.deliver(order_created(), structured=structured) == 200

    assert bodies(klaviyo) == [PLACED, *ORDERED_PRODUCTS]
    assert writes(klaviyo) == [(BULK, 202, 4)]  # one request for the order
    entries = bulk_posts(klaviyo)[0].json["data"]["attributes"]["events-bulk-create"]["data"]
    assert all("backfill" not in e["attributes"] for e in entries)  # realtime: flows fire
    assert len(klaviyo.events) == 4 and len(klaviyo.profiles) == 1
    assert not any(e["backfill"] for e in klaviyo.events)
    # One order read (with discount codes expanded), the published products' current data with
    # their categories and the categories' ancestors expanded, and the products not published
    # (here: prod-gone, deleted) from products: no categories query.
    reads = [(r.path, r.query.get("expand")) for r in ct.api_requests()]
    assert reads == [
        ("/test-project/orders/order-1", ["discountCodes[*].discountCode"]),
        ("/test-project/product-projections", ["categories[*]", "categories[*].ancestors[*]"]),
        ("/test-project/products", ["masterData.current.categories[*]",
                                    "masterData.current.categories[*].ancestors[*]"]),
    ]


def test_order_imported_in_any_state_is_placed(make_realtime: Any, ct: Any, klaviyo: Any) -> None:
    """The reference sent nothing for imported orders (not Open); we send them like any other."""
    seed(ct, orderState="Complete")
    realtime = make_realtime(**URL_ENV)

    assert realtime.deliver(message("OrderImported", order={**ORDER,
                                                            "orderState": "Complete"})) == 200

    assert bodies(klaviyo) == [PLACED, *ORDERED_PRODUCTS]


def test_order_customer_set_fetches_the_order(make_realtime: Any, ct: Any, klaviyo: Any) -> None:
    seed(ct)
    realtime = make_realtime(**URL_ENV)
    delivery = message("OrderCustomerSet", customer={"typeId": "customer", "id": "cust-1"})

    assert realtime.deliver(delivery) == 200

    assert bodies(klaviyo) == [PLACED, *ORDERED_PRODUCTS]


def test_payload_not_included_fetches_the_order(make_realtime: Any, ct: Any, klaviyo: Any) -> None:
    seed(ct)
    realtime = make_realtime(**URL_ENV)
    delivery = order_created()
    del delivery["order"], delivery["type"]
    delivery["payloadNotIncluded"] = {"reason": "Payload too large.", "payloadType": "OrderCreated"}

    assert realtime.deliver(delivery) == 200

    assert bodies(klaviyo) == [PLACED, *ORDERED_PRODUCTS]


def test_stale_embedded_order_is_not_trusted(realtime: Any, ct: Any, klaviyo: Any) -> None:
    seed(ct, customerId=None, customerEmail="new@example.org")  # a guest order: named by email

    assert realtime.deliver(order_created()) == 200  # the payload still has the old email

    assert {b["data"]["attributes"]["profile"]["data"]["attributes"]["email"]
            for b in bodies(klaviyo)} == {"new@example.org"}


def test_configured_created_messages_and_metric_names(
    make_realtime: Any, ct: Any, klaviyo: Any
) -> None:
    seed(ct)
    realtime = make_realtime(ORDER_CREATED_MESSAGES="OrderCreated",
                             METRIC_PLACED_ORDER="Order Placed",
                             METRIC_ORDERED_PRODUCT="Product Ordered")

    assert realtime.deliver(message("OrderImported", order=ORDER)) == 200
    assert klaviyo.requests == []

    assert realtime.deliver(order_created()) == 200
    assert [b["data"]["attributes"]["metric"]["data"]["attributes"]["name"]
            for b in bodies(klaviyo)] == ["Order Placed"] + ["Product Ordered"] * 3


def test_order_properties_include_rename(make_realtime: Any, ct: Any, klaviyo: Any) -> None:
    seed(ct)
    realtime = make_realtime(ORDER_PROPERTIES_INCLUDE="orderState,custom.giftNote",
                             ORDER_PROPERTIES_RENAME='{"custom.giftNote": "GiftNote"}')

    assert realtime.deliver(order_created()) == 200

    placed, *products = bodies(klaviyo)
    properties = placed["data"]["attributes"]["properties"]
    assert (properties["orderState"], properties["GiftNote"]) == ("Open", "Happy")
    assert all("GiftNote" not in p["data"]["attributes"]["properties"] for p in products)


def test_order_without_customer_is_skipped(realtime: Any, ct: Any, klaviyo: Any,
                                           caplog: pytest.LogCaptureFixture) -> None:
    seed(ct, customerId=None, customerEmail=None)
    caplog.set_level(logging.INFO, logger="connector")

    assert realtime.deliver(order_created()) == 200

    assert klaviyo.requests == []
    assert any(r.getMessage() == "order has no customer id and no email; skipped"
               and getattr(r, "ctOrderId", None) == "order-1" for r in caplog.records)


def test_deleted_order_sends_nothing(realtime: Any, ct: Any, klaviyo: Any) -> None:
    assert realtime.deliver(order_created()) == 200
    assert klaviyo.requests == []


# ---- Fulfilled / Cancelled Order ----------------------------------------------------------------


def state_body(metric: str, unique_id: str, time: str = "2026-03-03T09:00:00.000Z"
               ) -> dict[str, Any]:
    return event_body(metric, ORDER_PROPERTIES, unique_id=unique_id, value=104.0, time=time)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("Cancelled", [state_body("Cancelled Order", "order-1:cancelled")]),
        ("Complete", [state_body("Fulfilled Order", "order-1:fulfilled")]),
        ("Confirmed", [state_body("Fulfilled Order", "order-1:fulfilled")]),
        ("Open", []),
    ],
)
def test_order_state_changed(make_realtime: Any, ct: Any, klaviyo: Any, state: str,
                             expected: list[dict[str, Any]]) -> None:
    seed(ct, orderState=state)
    realtime = make_realtime(**URL_ENV)

    assert realtime.deliver(state_changed(state)) == 200

    assert bodies(klaviyo) == expected
    assert writes(klaviyo) == [(EVENTS, 202, 1)] * len(expected)  # one event: no bulk request


def test_configured_state_map(make_realtime: Any, ct: Any, klaviyo: Any) -> None:
    seed(ct, orderState="Complete")
    realtime = make_realtime(ORDER_STATE_METRICS='{"Complete": "Completed Order", '
                                                 '"Cancelled": "Cancelled Order"}',
                             METRIC_CANCELLED_ORDER="Order Cancelled")

    assert realtime.deliver(state_changed("Confirmed")) == 200
    assert klaviyo.requests == []  # Confirmed is no longer mapped

    assert realtime.deliver(state_changed("Complete")) == 200
    assert realtime.deliver(state_changed("Cancelled")) == 200
    assert [(b["data"]["attributes"]["metric"]["data"]["attributes"]["name"],
             b["data"]["attributes"]["unique_id"]) for b in bodies(klaviyo)] == [
        ("Completed Order", "order-1:completed-order"),
        ("Cancelled Order", "order-1:cancelled-order"),  # the map names it literally
    ]


def test_confirmed_then_complete_is_one_fulfilled_order(
    realtime: Any, ct: Any, klaviyo: Any
) -> None:
    seed(ct, orderState="Complete")

    assert realtime.deliver(state_changed("Confirmed")) == 200
    assert realtime.deliver(state_changed("Complete", old="Confirmed")) == 200

    assert len(event_posts(klaviyo)) == 2
    assert stored(klaviyo) == [("Fulfilled Order", "order-1:fulfilled")]


def test_shipment_state_changed(realtime: Any, ct: Any, klaviyo: Any) -> None:
    seed(ct, shipmentState="Shipped")

    assert realtime.deliver(message("OrderShipmentStateChanged", shipmentState="Ready",
                                    oldShipmentState="Pending")) == 200
    assert klaviyo.requests == []

    assert realtime.deliver(message("OrderShipmentStateChanged", shipmentState="Shipped",
                                    oldShipmentState="Ready")) == 200
    assert stored(klaviyo) == [("Fulfilled Order", "order-1:fulfilled")]


def test_state_change_without_payload_uses_the_current_state(
    realtime: Any, ct: Any, klaviyo: Any
) -> None:
    seed(ct, orderState="Cancelled")
    delivery = state_changed("Cancelled")
    del delivery["orderState"], delivery["oldOrderState"], delivery["type"]
    delivery["payloadNotIncluded"] = {"reason": "Payload too large.",
                                      "payloadType": "OrderStateChanged"}

    assert realtime.deliver(delivery) == 200

    assert stored(klaviyo) == [("Cancelled Order", "order-1:cancelled")]


def resource_updated(version: int = 4) -> dict[str, Any]:
    return {"notificationType": "ResourceUpdated", "projectKey": "test-project",
            "resource": {"typeId": "order", "id": "order-1"}, "version": version,
            "oldVersion": version - 1, "modifiedAt": "2026-03-04T00:00:00.000Z"}


def test_resource_updated_trigger_is_opt_in(make_realtime: Any, ct: Any, klaviyo: Any) -> None:
    seed(ct, orderState="Complete")

    assert make_realtime().deliver(resource_updated()) == 200
    assert klaviyo.requests == []

    realtime = make_realtime(ORDER_STATE_CHANGE_TRIGGERS="ResourceUpdated", **URL_ENV)
    assert realtime.deliver(resource_updated()) == 200
    assert bodies(klaviyo) == [state_body("Fulfilled Order", "order-1:fulfilled",
                                          time="2026-03-04T00:00:00.000Z")]
    assert realtime.deliver(state_changed("Complete")) == 200  # no longer a trigger
    assert len(event_posts(klaviyo)) == 1


# ---- Refunded Order -----------------------------------------------------------------------------


def transaction(tid: str, state: str, cents: int, type_: str = "Refund",
                currency: str = "EUR") -> dict[str, Any]:
    return {"id": tid, "type": type_, "state": state,
            "amount": {"type": "centPrecision", "currencyCode": currency, "centAmount": cents,
                       "fractionDigits": 2},
            "timestamp": f"2026-03-0{5 if tid == 'tx-r1' else 6}T12:00:00.000Z"}


def seed_payment(ct: Any, *transactions: dict[str, Any]) -> None:
    ct.add("payments", {"id": "pay-1", "amountPlanned": eur(10400),
                        "transactions": [transaction("tx-charge", "Success", 10400, "Charge"),
                                         *transactions]})


def transaction_added(tx: dict[str, Any]) -> dict[str, Any]:
    return message("PaymentTransactionAdded", resource="payment", resource_id="pay-1",
                   transaction=tx)


def transaction_state_changed(tid: str, state: str) -> dict[str, Any]:
    return message("PaymentTransactionStateChanged", resource="payment", resource_id="pay-1",
                   transactionId=tid, state=state)


def refund_body(tid: str, value: float, time: str, currency: str = "EUR") -> dict[str, Any]:
    return event_body("Refunded Order", {**ORDER_PROPERTIES, "PaymentId": "pay-1"},
                      unique_id=tid, value=value, time=time, currency=currency)


def test_refund_is_sent_when_its_transaction_succeeds(
    make_realtime: Any, ct: Any, klaviyo: Any
) -> None:
    seed(ct)
    realtime = make_realtime(**URL_ENV)
    pending = transaction("tx-r1", "Pending", 1500)
    seed_payment(ct, pending)

    assert realtime.deliver(transaction_added(pending)) == 200
    assert klaviyo.requests == []

    seed_payment(ct, {**pending, "state": "Success"})
    assert realtime.deliver(transaction_state_changed("tx-r1", "Success")) == 200

    assert bodies(klaviyo) == [refund_body("tx-r1", 15.0, "2026-03-05T12:00:00.000Z")]
    # One read per delivery: the order holding the payment, payment and discount codes expanded.
    refund_read = ("/test-project/orders",
                   ["discountCodes[*].discountCode", "paymentInfo.payments[*]"])
    assert [(r.path, r.query.get("expand")) for r in ct.api_requests()][:3] == [
        refund_read, refund_read,
        ("/test-project/product-projections", ["categories[*]", "categories[*].ancestors[*]"])]


def test_second_partial_refund_is_its_own_event(realtime: Any, ct: Any, klaviyo: Any) -> None:
    seed(ct)
    first = transaction("tx-r1", "Success", 1500)
    second = transaction("tx-r2", "Success", 250, currency="USD")
    seed_payment(ct, first, second)

    assert realtime.deliver(transaction_added(first)) == 200
    assert realtime.deliver(transaction_added(second)) == 200

    assert [(b["data"]["attributes"]["unique_id"], b["data"]["attributes"]["value"],
             b["data"]["attributes"]["value_currency"]) for b in bodies(klaviyo)] == [
        ("tx-r1", 15.0, "EUR"), ("tx-r2", 2.5, "USD")]
    assert stored(klaviyo) == [("Refunded Order", "tx-r1"), ("Refunded Order", "tx-r2")]


@pytest.mark.parametrize(
    "delivery",
    [
        transaction_added(transaction("tx-c2", "Success", 100, "Charge")),
        transaction_state_changed("tx-r1", "Failure"),
        transaction_state_changed("tx-unknown", "Success"),
    ],
    ids=["charge", "failed-refund", "unknown-transaction"],
)
def test_other_transactions_send_nothing(realtime: Any, ct: Any, klaviyo: Any,
                                         delivery: dict[str, Any]) -> None:
    seed(ct)
    seed_payment(ct, transaction("tx-c2", "Success", 100, "Charge"),
                 transaction("tx-r1", "Failure", 1500))

    assert realtime.deliver(delivery) == 200
    assert klaviyo.requests == []


def test_refund_without_payload_sends_every_successful_refund(
    realtime: Any, ct: Any, klaviyo: Any
) -> None:
    seed(ct)
    seed_payment(ct, transaction("tx-r1", "Success", 1500), transaction("tx-r2", "Pending", 9))
    delivery = transaction_state_changed("tx-r1", "Success")
    del delivery["transactionId"], delivery["state"], delivery["type"]
    delivery["payloadNotIncluded"] = {"reason": "Payload too large.",
                                      "payloadType": "PaymentTransactionStateChanged"}

    assert realtime.deliver(delivery) == 200
    assert stored(klaviyo) == [("Refunded Order", "tx-r1")]


def test_refund_of_a_payment_without_order_is_skipped(realtime: Any, ct: Any,
                                                      klaviyo: Any) -> None:
    refund = transaction("tx-r1", "Success", 1500)
    seed_payment(ct, refund)

    assert realtime.deliver(transaction_added(refund)) == 200
    assert klaviyo.requests == []


# ---- delivery guarantees ------------------------------------------------------------------------


def test_redelivery_uses_the_same_unique_ids(realtime: Any, ct: Any, klaviyo: Any) -> None:
    seed(ct)
    delivery = order_created()

    assert realtime.deliver(delivery) == 200
    assert realtime.deliver(delivery) == 200

    first, second = bodies(klaviyo)[:4], bodies(klaviyo)[4:]
    assert first == second
    assert writes(klaviyo) == [(BULK, 202, 4)] * 2
    assert len(klaviyo.events) == 4


def test_429_is_retried_then_succeeds(realtime: Any, ct: Any, klaviyo: Any) -> None:
    seed(ct, orderState="Cancelled")
    klaviyo.inject(429, path="/api/events", retry_after=1)

    assert realtime.deliver(state_changed("Cancelled")) == 200

    assert [r.status for r in event_posts(klaviyo)] == [429, 202]
    assert stored(klaviyo) == [("Cancelled Order", "order-1:cancelled")]


def test_429_on_the_bulk_endpoint_falls_back_to_one_post_per_event_at_once(
    make_realtime: Any, ct: Any, klaviyo: Any
) -> None:
    """The bulk budget (150/min) is shared with bulk imports and other instances: no waiting for
    its Retry-After, the events go by POST /api/events (3,500/min) right away; the limiter is told,
    so the next order does not even try the bulk endpoint until Retry-After has passed."""
    seed(ct)
    realtime = make_realtime(**URL_ENV)
    klaviyo.inject(429, path=BULK, retry_after=30)

    assert realtime.deliver(order_created()) == 200

    assert writes(klaviyo) == [(BULK, 429, 4)] + [(EVENTS, 202, 1)] * 4
    assert bodies(klaviyo)[4:] == [PLACED, *ORDERED_PRODUCTS]  # nothing lost
    assert len(klaviyo.events) == 4  # no duplicates

    assert realtime.deliver(order_created()) == 200  # a redelivery, within the Retry-After
    assert writes(klaviyo)[5:] == [(EVENTS, 202, 1)] * 4  # per event, no bulk attempt
    assert len(klaviyo.events) == 4


def test_bulk_limit_busy_sends_one_post_per_event_without_waiting(
    make_realtime: Any, ct: Any, klaviyo: Any
) -> None:
    """The process's event-bulk burst (10/s) is used up: waiting for a slot is not worth it."""
    seed(ct)
    realtime = make_realtime(**URL_ENV)
    shared = limiter.shared_limiter()
    for _ in range(10):
        assert shared.try_acquire("POST", BULK)

    assert realtime.deliver(order_created()) == 200

    assert writes(klaviyo) == [(EVENTS, 202, 1)] * 4
    assert bodies(klaviyo) == [PLACED, *ORDERED_PRODUCTS]
    assert len(klaviyo.events) == 4


def test_bulk_and_per_event_send_the_same_events(realtime: Any, ct: Any, klaviyo: Any) -> None:
    """A 5-line order: one request carrying 6 events; sent again one by one (after a 429) they
    are the same events with the same unique_ids, so Klaviyo keeps one of each."""
    lines = [{**copy.deepcopy(ORDER["lineItems"][0]), "id": f"li-{i}"} for i in range(1, 6)]
    seed(ct, id="order-5", lineItems=lines, customLineItems=[])

    assert realtime.deliver(message("OrderCreated", resource_id="order-5")) == 200
    assert writes(klaviyo) == [(BULK, 202, 6)]
    bulk = bodies(klaviyo)
    assert [b["data"]["attributes"]["unique_id"] for b in bulk] == [
        "order-5:placed", "li-1", "li-2", "li-3", "li-4", "li-5"]

    klaviyo.inject(429, path=BULK, retry_after=1)
    assert realtime.deliver(message("OrderCreated", resource_id="order-5")) == 200
    assert writes(klaviyo)[1:] == [(BULK, 429, 6)] + [(EVENTS, 202, 1)] * 6
    assert bodies(klaviyo)[12:] == bulk
    assert len(klaviyo.events) == 6


@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
def test_a_bad_event_rejects_the_bulk_request_then_only_itself(
    realtime: Any, ct: Any, klaviyo: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Klaviyo validates a bulk request as a whole: one event it refuses (here a unique_id over
    255 characters) makes the request a 400; one by one the others are recorded and that one is
    reported, the message acknowledged."""
    seed(ct)
    long_id = "li-" + "x" * 300
    ct.add("orders", {**copy.deepcopy(ORDER), "lineItems": [
        {**copy.deepcopy(ORDER["lineItems"][0]), "id": long_id}, ORDER["lineItems"][1]]})
    caplog.set_level(logging.INFO, logger="connector")

    assert realtime.deliver(order_created()) == 200  # terminal: acknowledged

    assert writes(klaviyo) == [(BULK, 400, 4), (EVENTS, 202, 1), (EVENTS, 400, 1),
                               (EVENTS, 202, 1), (EVENTS, 202, 1)]
    assert stored(klaviyo) == sorted([("Placed Order", "order-1:placed"),
                                      ("Ordered Product", "li-2"),
                                      ("Ordered Product", "cli-1")])
    rejected = [r for r in caplog.records if r.getMessage() == "klaviyo rejected an order event"]
    assert [getattr(r, "uniqueId", None) for r in rejected] == [long_id]


def test_server_error_on_the_bulk_endpoint_falls_back_at_once(
    realtime: Any, ct: Any, klaviyo: Any
) -> None:
    seed(ct)
    klaviyo.inject(503, path=BULK)

    assert realtime.deliver(order_created()) == 200

    assert writes(klaviyo) == [(BULK, 503, 4)] + [(EVENTS, 202, 1)] * 4  # no bulk retry
    assert len(klaviyo.events) == 4


def test_a_slow_bulk_request_leaves_time_for_the_fallback(
    realtime: Any, ct: Any, klaviyo: Any
) -> None:
    """The bulk request may use half the time left (5 s deadline): an answer slower than that
    is given up, the events go one by one, and the bulk copy Klaviyo records late is
    deduplicated by unique_id."""
    seed(ct)
    klaviyo.inject(None, path=BULK, delay=3.5)  # answered normally, but late

    started = time.monotonic()
    assert realtime.deliver(order_created()) == 200
    assert time.monotonic() - started < 4.5

    assert [(path, n) for path, _, n in writes(klaviyo)] == [(BULK, 4)] + [(EVENTS, 1)] * 4
    time.sleep(max(0.0, started + 3.8 - time.monotonic()))  # the late bulk answer is done
    assert bulk_posts(klaviyo)[0].status == 202
    assert len(klaviyo.events) == 4


def test_huge_order_goes_in_requests_of_at_most_1000_events(
    make_realtime: Any, ct: Any, klaviyo: Any
) -> None:
    line = ORDER["lineItems"][0]
    lines = [{**copy.deepcopy(line), "id": f"li-{i:04d}"} for i in range(1200)]
    seed(ct, lineItems=lines, customLineItems=[])
    realtime = make_realtime(REALTIME_DEADLINE_SECONDS="30")

    assert realtime.deliver(order_created()) == 200

    assert writes(klaviyo) == [(BULK, 202, 1000), (BULK, 202, 201)]
    assert len(klaviyo.events) == 1201
    assert [b["data"]["attributes"]["unique_id"] for b in bodies(klaviyo)] == [
        "order-1:placed", *(f"li-{i:04d}" for i in range(1200))]


def test_server_error_forever_fails_the_invocation_then_redelivery_completes(
    make_realtime: Any, ct: Any, klaviyo: Any
) -> None:
    seed(ct)
    realtime = make_realtime(REALTIME_DEADLINE_SECONDS="1.5")
    faults = [klaviyo.inject(500, times=1000, path=path) for path in (BULK, EVENTS)]

    assert realtime.deliver(order_created()) == 500  # Pub/Sub will redeliver
    # The bulk request once, then POST /api/events retried until the deadline.
    assert len(bulk_posts(klaviyo)) == 1 and len(event_posts(klaviyo)) >= 2
    assert klaviyo.events == []

    for fault in faults:
        fault.times = 0
    assert realtime.deliver(order_created()) == 200
    assert len(klaviyo.events) == 4


def test_a_rejected_event_does_not_stop_the_others(realtime: Any, ct: Any, klaviyo: Any) -> None:
    seed(ct)
    klaviyo.inject(400, path=BULK)  # the batch rejected for the Placed Order, ...
    klaviyo.inject(400, path="/api/events")  # ... which is rejected on its own too

    assert realtime.deliver(order_created()) == 200  # terminal: acknowledged

    assert [r.status for r in bulk_posts(klaviyo)] == [400]
    assert [r.status for r in event_posts(klaviyo)] == [400, 202, 202, 202]
    assert [m for m, _ in stored(klaviyo)] == ["Ordered Product"] * 3


def test_commercetools_outage_fails_the_invocation(make_realtime: Any, ct: Any,
                                                   klaviyo: Any) -> None:
    seed(ct)
    realtime = make_realtime(REALTIME_DEADLINE_SECONDS="1.5")
    ct.inject(503, times=None, path="/test-project/orders")

    assert realtime.deliver(order_created()) == 500
    assert klaviyo.requests == []


def test_disabled_processors_send_nothing(make_realtime: Any, ct: Any, klaviyo: Any) -> None:
    seed(ct, orderState="Complete")
    refund = transaction("tx-r1", "Success", 1500)
    seed_payment(ct, refund)
    realtime = make_realtime(DISABLED_PROCESSORS="OrderCreated, OrderStateChanged,OrderRefunded")

    for delivery in (order_created(), state_changed("Complete"), transaction_added(refund)):
        assert realtime.deliver(delivery) == 200
    assert klaviyo.requests == []
    assert ct.api_requests() == []


def test_each_message_twice_out_of_order_ends_in_the_right_state(
    realtime: Any, ct: Any, klaviyo: Any
) -> None:
    """commercetools' final state: Complete, shipped, one refund done, one still pending."""
    seed(ct, orderState="Complete", shipmentState="Shipped")
    seed_payment(ct, transaction("tx-r1", "Success", 1500), transaction("tx-r2", "Pending", 700))
    deliveries = [
        order_created(),
        state_changed("Confirmed"),
        state_changed("Complete", old="Confirmed"),
        message("OrderShipmentStateChanged", shipmentState="Shipped", oldShipmentState="Ready"),
        transaction_added(transaction("tx-r1", "Pending", 1500)),
        transaction_state_changed("tx-r1", "Success"),
        transaction_added(transaction("tx-r2", "Pending", 700)),
        message("OrderCustomerSet", customer={"typeId": "customer", "id": "cust-1"}),
    ]
    shuffled = [deliveries[i] for i in (5, 2, 7, 0, 3, 6, 1, 4)]

    for delivery in shuffled + list(reversed(deliveries)):
        assert realtime.deliver(delivery) == 200

    assert stored(klaviyo) == sorted([
        ("Placed Order", "order-1:placed"),
        ("Ordered Product", "li-1"), ("Ordered Product", "li-2"), ("Ordered Product", "cli-1"),
        ("Fulfilled Order", "order-1:fulfilled"),
        ("Refunded Order", "tx-r1"),
    ])
    assert len({e["profile_id"] for e in klaviyo.events}) == 1
    # Each delivery placing the order (OrderCreated, OrderCustomerSet; twice each) was one bulk
    # request; the state and refund changes, one event each, POST /api/events.
    assert [n for path, _, n in writes(klaviyo) if path == BULK] == [4] * 4
    assert {n for path, _, n in writes(klaviyo) if path == EVENTS} == {1}


def test_logs_carry_ids_not_personal_data(realtime: Any, ct: Any, klaviyo: Any,
                                          caplog: pytest.LogCaptureFixture) -> None:
    seed(ct)
    refund = transaction("tx-r1", "Success", 1500)
    seed_payment(ct, refund)
    klaviyo.inject(400, path=BULK)
    klaviyo.inject(400, times=2, path="/api/events")
    caplog.set_level(logging.DEBUG, logger="connector")

    assert realtime.deliver(order_created()) == 200
    assert realtime.deliver(transaction_added(refund)) == 200

    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records
             if r.name.startswith("connector")]
    assert any(line.get("ctOrderId") == "order-1" for line in lines)
    text = json.dumps(lines)
    for pii in ("jane@example.org", "Jane", "High Road", "London", "SW1A"):
        assert pii not in text
