"""Started Checkout end to end: cart change notifications → realtime function → CT and Klaviyo
fakes."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from shared.commercetools.models.cart import Cart
from shared.config import get_settings
from shared.log import JsonFormatter
from shared.mapping.checkout import basket_hash
from tests.fakes.commercetools import FakeCommercetools
from tests.fakes.klaviyo import FakeKlaviyo
from tests.realtime import RealtimeFunction


def eur(cents: int) -> dict[str, Any]:
    return {"type": "centPrecision", "currencyCode": "EUR", "centAmount": cents,
            "fractionDigits": 2}


CART: dict[str, Any] = {
    "id": "cart-1",
    "version": 5,
    "cartState": "Active",
    "customerId": "cust-1",
    "customerEmail": "jane@example.org",
    "createdAt": "2026-03-01T09:00:00.000Z",
    "lastModifiedAt": "2026-03-01T10:15:30.000Z",
    "totalPrice": eur(4498),
    "lineItems": [
        {"id": "li-1", "productId": "prod-1", "name": {"en": "T-Shirt"},
         "productSlug": {"en": "t-shirt"},
         "variant": {"id": 2, "sku": "TEE-M",
                     "images": [{"url": "https://img.example/tee.png",
                                 "dimensions": {"w": 1, "h": 1}}]},
         "price": {"value": eur(1999)}, "quantity": 2, "totalPrice": eur(3998)},
        {"id": "li-2", "productId": "prod-2", "name": {"en": "Socks"},
         "variant": {"id": 1, "sku": "SOCKS"},
         "price": {"value": eur(500)}, "quantity": 1, "totalPrice": eur(500)},
    ],
    "customLineItems": [],
    "shippingAddress": {"firstName": "Jane", "streetName": "Hauptstr.", "city": "Berlin",
                        "country": "DE"},
}
PRODUCTS = [
    {"id": "prod-1", "key": "tee", "masterData": {"published": True, "current": {
        "name": {"en": "T-Shirt"}, "slug": {"en": "t-shirt"},
        "categories": [{"typeId": "category", "id": "cat-shirts"}],
        "masterVariant": {"id": 1, "sku": "TEE-S"}, "variants": []}}},
    {"id": "prod-2", "masterData": {"published": True, "current": {
        "name": {"en": "Socks"}, "slug": {"en": "socks"}, "categories": [],
        "masterVariant": {"id": 1, "sku": "SOCKS"}, "variants": []}}},
]
CATEGORIES = [
    {"id": "cat-men", "name": {"en": "Men"}, "slug": {"en": "men"}, "ancestors": []},
    {"id": "cat-shirts", "name": {"en": "Shirts"}, "slug": {"en": "shirts"},
     "ancestors": [{"typeId": "category", "id": "cat-men"}]},
]

EXPECTED_EVENT: dict[str, Any] = {
    "data": {"type": "event", "attributes": {
        "properties": {
            "CartId": "cart-1",
            "CheckoutURL": "https://shop.example/checkout/cart-1",
            "ItemNames": ["T-Shirt", "Socks"],
            "Categories": ["Men", "Men > Shirts"],
            "Items": [
                {"ProductID": "prod-1", "SKU": "TEE-M", "ProductName": "T-Shirt", "Quantity": 2,
                 "ItemPrice": 19.99, "RowTotal": 39.98,
                 "ProductURL": "https://shop.example/p/t-shirt",
                 "ImageURL": "https://img.example/tee.png", "Categories": ["Men", "Men > Shirts"]},
                {"ProductID": "prod-2", "SKU": "SOCKS", "ProductName": "Socks", "Quantity": 1,
                 "ItemPrice": 5.0, "RowTotal": 5.0, "ProductURL": "https://shop.example/p/socks"},
            ],
        },
        "time": "2026-03-01T10:15:30.000Z",
        "unique_id": f"cart-1:checkout:{basket_hash(Cart.model_validate(CART))}",
        "metric": {"data": {"type": "metric", "attributes": {"name": "Started Checkout"}}},
        "value": 44.98,
        "value_currency": "EUR",
        "profile": {"data": {"type": "profile", "attributes": {
            "email": "jane@example.org", "external_id": "cust-1"}}},
    }},
}
URLS = {"CHECKOUT_URL_TEMPLATE": "https://shop.example/checkout/{cartId}",
        "PRODUCT_URL_TEMPLATE": "https://shop.example/p/{slug}"}


def cart_change(kind: str = "ResourceUpdated", cart_id: str = "cart-1",
                version: int = 5) -> dict[str, Any]:
    change: dict[str, Any] = {
        "notificationType": kind, "projectKey": "test-project",
        "resource": {"typeId": "cart", "id": cart_id}, "version": version,
        "modifiedAt": "2026-03-01T10:15:30.000Z",
    }
    if kind == "ResourceUpdated":
        change["oldVersion"] = version - 1
    return change


def store(ct: Any, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(CART)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    for product in PRODUCTS:
        ct.add("products", product)
    for category in CATEGORIES:
        ct.add("categories", category)
    return ct.add("carts", doc)


def events_sent(klaviyo: Any) -> list[Any]:
    return klaviyo.requests_to("POST", "/api/events")


@pytest.fixture
def checkout(make_realtime: Any) -> Any:
    return make_realtime(**URLS)


@pytest.mark.parametrize("kind", ["ResourceUpdated", "ResourceCreated"])
def test_cart_in_checkout_sends_started_checkout(
    checkout: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo, kind: str
) -> None:
    store(ct)

    assert checkout.deliver(cart_change(kind)) == 200

    (request,) = events_sent(klaviyo)
    assert request.json == EXPECTED_EVENT
    assert request.header("revision") == get_settings().klaviyo_api_revision
    assert klaviyo.requests == [request]  # nothing else was written
    # The change carries no cart: it was read, and the orders query made sure it is not ordered.
    reads = [(r.path, r.param("where")) for r in ct.api_requests()]
    assert reads[:2] == [("/test-project/carts/cart-1", None),
                         ("/test-project/orders", 'cart(id="cart-1")')]
    assert len(klaviyo.events) == 1


def test_same_cart_state_delivered_twice_sends_one_event(
    checkout: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    store(ct)

    assert checkout.deliver(cart_change(version=5)) == 200
    assert checkout.deliver(cart_change(version=5)) == 200  # a redelivery
    # A later edit that leaves the basket as it was (the address corrected) is the same state.
    store(ct, version=6, lastModifiedAt="2026-03-01T10:20:00.000Z",
          shippingAddress={"streetName": "Hauptstraße", "city": "Berlin", "country": "DE"})
    assert checkout.deliver(cart_change(version=6)) == 200

    first, second, third = events_sent(klaviyo)
    assert first.json == second.json == EXPECTED_EVENT
    assert third.json["data"]["attributes"]["unique_id"] == first.json["data"]["attributes"][
        "unique_id"]
    assert len(klaviyo.events) == 1  # Klaviyo keeps one event per profile, metric and unique_id


def test_basket_change_sends_a_new_event(
    checkout: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    store(ct)
    assert checkout.deliver(cart_change(version=5)) == 200
    more_socks = copy.deepcopy(CART["lineItems"])
    more_socks[1].update(quantity=3, totalPrice=eur(1500))
    store(ct, version=6, lineItems=more_socks, totalPrice=eur(5498),
          lastModifiedAt="2026-03-01T11:00:00.000Z")

    assert checkout.deliver(cart_change(version=6)) == 200

    first, second = events_sent(klaviyo)
    before, after = first.json["data"]["attributes"], second.json["data"]["attributes"]
    assert after["unique_id"] != before["unique_id"]
    assert after["unique_id"] == (
        f"cart-1:checkout:{basket_hash(Cart.model_validate({**CART, 'lineItems': more_socks}))}")
    assert after["value"] == 54.98 and after["time"] == "2026-03-01T11:00:00.000Z"
    assert after["properties"]["Items"][1]["Quantity"] == 3
    assert len(klaviyo.events) == 2


@pytest.mark.parametrize(
    ("changes", "ct_reads"),
    [
        ({"cartState": "Ordered"}, 1),
        ({"cartState": "Merged"}, 1),
        ({"shippingAddress": None}, 1),  # not in checkout yet (default signal)
        ({"lineItems": []}, 1),
        ({"customerEmail": None, "customerId": None, "anonymousId": "anon-1"}, 1),
        ({"customerEmail": None, "customerId": "gone"}, 2),  # its customer was deleted too
    ],
    ids=["ordered", "merged", "no-shipping-address", "empty", "anonymous-no-email",
         "customer-without-email"],
)
def test_carts_that_are_not_open_checkouts_send_nothing(
    checkout: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo,
    changes: dict[str, Any], ct_reads: int
) -> None:
    store(ct, **changes)

    assert checkout.deliver(cart_change()) == 200

    assert klaviyo.requests == []
    assert len(ct.api_requests()) == ct_reads  # skipped before fetching products


def test_cart_with_a_placed_order_sends_nothing(
    checkout: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    """The order exists but the cart read still says Active (another path created the order)."""
    store(ct)
    ct.add("orders", {"id": "order-1", "cart": {"typeId": "cart", "id": "cart-1"},
                      "totalPrice": eur(4498), "lineItems": []})

    assert checkout.deliver(cart_change()) == 200
    assert klaviyo.requests == []


def test_signed_in_cart_without_email_uses_the_customers(
    checkout: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    store(ct, customerEmail=None)
    ct.add("customers", {"id": "cust-1", "email": "jane.account@example.org"})

    assert checkout.deliver(cart_change()) == 200

    (request,) = events_sent(klaviyo)
    assert request.json["data"]["attributes"]["profile"] == {"data": {
        "type": "profile",
        "attributes": {"email": "jane.account@example.org", "external_id": "cust-1"}}}


def test_deleted_cart_is_acknowledged(
    checkout: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    assert checkout.deliver(cart_change(cart_id="gone")) == 200
    assert klaviyo.requests == []


def test_custom_field_signal(
    make_realtime: Callable[..., RealtimeFunction], ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    realtime = make_realtime(CHECKOUT_SIGNAL="custom_field:checkoutStep", **URLS)
    custom = {"type": {"typeId": "type", "id": "t"}, "fields": {"checkoutStep": "payment"}}
    store(ct, shippingAddress=None)
    assert realtime.deliver(cart_change(version=5)) == 200  # no field yet: not in checkout
    store(ct, shippingAddress=None, custom=custom, version=6)

    assert realtime.deliver(cart_change(version=6)) == 200

    (request,) = events_sent(klaviyo)
    assert request.json["data"]["attributes"]["properties"] == EXPECTED_EVENT["data"][
        "attributes"]["properties"]


def test_any_update_signal_and_renamed_metric(
    make_realtime: Callable[..., RealtimeFunction], ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    realtime = make_realtime(CHECKOUT_SIGNAL="any_update",
                             METRIC_STARTED_CHECKOUT="Checkout Started")
    store(ct, shippingAddress=None)

    assert realtime.deliver(cart_change("ResourceCreated", version=1)) == 200

    (request,) = events_sent(klaviyo)
    attributes = request.json["data"]["attributes"]
    assert attributes["metric"]["data"]["attributes"]["name"] == "Checkout Started"
    assert "CheckoutURL" not in attributes["properties"]  # no template configured


def test_disabled_processor_reads_nothing(
    make_realtime: Callable[..., RealtimeFunction], ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    realtime = make_realtime(DISABLED_PROCESSORS="StartedCheckout")
    store(ct)

    assert realtime.deliver(cart_change()) == 200
    assert klaviyo.requests == [] and ct.api_requests() == []


def test_klaviyo_outage_fails_the_invocation_for_redelivery(
    make_realtime: Callable[..., RealtimeFunction], ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    realtime = make_realtime(REALTIME_DEADLINE_SECONDS="1.5")
    store(ct)
    klaviyo.inject(503, times=1000, path="/api/events")

    assert realtime.deliver(cart_change()) == 500
    assert len(events_sent(klaviyo)) >= 2 and klaviyo.events == []


def test_checkout_logs_carry_no_pii(
    checkout: RealtimeFunction,
    ct: FakeCommercetools,
    klaviyo: FakeKlaviyo,
    caplog: pytest.LogCaptureFixture
) -> None:
    store(ct)
    caplog.set_level(logging.DEBUG, logger="connector")

    assert checkout.deliver(cart_change()) == 200
    store(ct, shippingAddress=None)
    assert checkout.deliver(cart_change()) == 200

    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records
             if r.name.startswith("connector")]
    assert any(line["message"] == "started checkout sent" and line["ctCartId"] == "cart-1"
               for line in lines)
    text = json.dumps(lines)
    for pii in ("jane@example.org", "Jane", "Hauptstr", "Berlin"):
        assert pii not in text


def test_processor_asks_for_cart_changes_only(
    make_realtime: Callable[..., RealtimeFunction]
) -> None:
    """The CT subscription is derived from the enabled processors' triggers (deploy/)."""
    from shared.processors import enabled_processors

    make_realtime()
    cart_triggers = [p.trigger for p in enabled_processors(get_settings())
                     if p.trigger.resource == "cart"]
    assert [(t.messages, t.changes) for t in cart_triggers] == [
        (frozenset(), frozenset({"ResourceCreated", "ResourceUpdated"}))]
