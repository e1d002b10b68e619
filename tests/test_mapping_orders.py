"""Table tests of the order → Klaviyo event mapping (shared/mapping/orders.py)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from shared.commercetools.models.order import Order
from shared.commercetools.models.payment import Payment
from shared.config import load_settings
from shared.mapping.events import KlaviyoEvent, bulk_entries
from shared.mapping.limits import (
    MAX_ARRAY_ITEMS,
    MAX_PROPERTIES,
    MAX_STRING_BYTES,
    limit_properties,
)
from shared.mapping.orders import (
    OrderMappingConfig,
    order_events,
    order_profile,
    placed_order_events,
    refund_event,
    state_change_event,
    state_metrics,
    state_unique_id,
    successful_refunds,
)
from shared.mapping.products import (
    ProductInfo,
    category_ids,
    product_ids,
    product_lookup,
    product_url,
)


def eur(cents: int, digits: int = 2) -> dict[str, Any]:
    return {"type": "centPrecision", "currencyCode": "EUR", "centAmount": cents,
            "fractionDigits": digits}


def cart_discount(cents: int) -> dict[str, Any]:
    return {"discount": {"typeId": "cart-discount", "id": "cd-1"}, "discountedAmount": eur(cents)}


BILLING = {
    "streetNumber": "23", "streetName": "High Road", "postalCode": "SW1A 1AA", "city": "London",
    "region": "Greater London", "country": "GB", "phone": "+442079460958",
    "firstName": "Jane", "email": "jane@example.org",
}

ORDER: dict[str, Any] = {
    "id": "order-1",
    "version": 4,
    "orderNumber": "A-1001",
    "customerId": "cust-1",
    "customerEmail": "jane@example.org",
    "createdAt": "2026-03-01T10:00:00.123Z",
    "lastModifiedAt": "2026-03-02T08:00:00.000Z",
    "orderState": "Open",
    "shipmentState": "Pending",
    "totalPrice": eur(10445),
    "lineItems": [
        {
            "id": "li-1",
            "productId": "prod-1",
            "productKey": "jeans",
            "name": {"en": "Blue Jeans", "de": "Blaue Jeans"},
            "productSlug": {"en": "blue-jeans", "de": "blaue-jeans"},
            "variant": {"id": 1, "sku": "JEANS-32", "images": [
                {"url": "https://img.example/jeans.png", "dimensions": {"w": 1, "h": 1}},
                {"url": "https://img.example/jeans-back.png", "dimensions": {"w": 1, "h": 1}},
            ]},
            "price": {"value": eur(5000)},
            "quantity": 2,
            "totalPrice": eur(9000),
            "discountedPricePerQuantity": [{
                "quantity": 2,
                "discountedPrice": {"value": eur(4500), "includedDiscounts": [cart_discount(500)]},
            }],
        },
        {
            "id": "li-2",
            "productId": "prod-2",
            "name": {"en": "Socks"},
            "variant": {"id": 1, "sku": "SOCKS"},
            "price": {"value": eur(1000), "discounted": {"value": eur(800),
                                                         "discount": {"typeId": "product-discount",
                                                                      "id": "pd"}}},
            "quantity": 1,
            "totalPrice": eur(800),
        },
    ],
    "customLineItems": [
        {"id": "cli-1", "name": {"en": "Gift wrap"}, "slug": "gift-wrap", "money": eur(300),
         "totalPrice": eur(300), "quantity": 1},
    ],
    "shippingInfo": {
        "shippingMethodName": "Express",
        "price": eur(1000),
        "discountedPrice": {"value": eur(545), "includedDiscounts": [cart_discount(455)]},
    },
    "discountCodes": [{"discountCode": {"typeId": "discount-code", "id": "dc-1",
                                        "obj": {"id": "dc-1", "code": "SPRING10"}},
                       "state": "MatchesCart"}],
    "discountOnTotalPrice": {"discountedAmount": eur(200)},
    "billingAddress": BILLING,
    "shippingAddress": {**BILLING, "city": "Leeds"},
    "custom": {"type": {"typeId": "type", "id": "t1"},
               "fields": {"giftNote": "Happy birthday", "newsletter": False, "points": 0}},
    "store": {"typeId": "store", "key": "eu"},
    "country": "GB",
}

PRODUCTS: list[dict[str, Any]] = [
    {"id": "prod-1", "key": "jeans", "masterData": {"published": True, "current": {
        "name": {"en": "Blue Jeans"}, "slug": {"en": "blue-jeans-product"},
        "categories": [{"typeId": "category", "id": "cat-jeans"}],
        "masterVariant": {"id": 1, "sku": "JEANS-32"}, "variants": []}}},
    {"id": "prod-2", "masterData": {"published": True, "current": {
        "name": {"en": "Socks"}, "slug": {"en": "socks"},
        "categories": [{"typeId": "category", "id": "cat-socks"},
                       {"typeId": "category", "id": "cat-pants"}],
        "masterVariant": {"id": 1, "sku": "SOCKS"}, "variants": []}}},
]
WOMEN = {"id": "cat-women", "name": {"en": "Women"}, "ancestors": []}
PANTS = {"id": "cat-pants", "name": {"en": "Pants"},
         "ancestors": [{"typeId": "category", "id": "cat-women", "obj": WOMEN}]}
CATEGORIES: list[dict[str, Any]] = [
    {"id": "cat-jeans", "name": {"en": "Jeans", "de": "Jeans DE"},
     "ancestors": [{"typeId": "category", "id": "cat-women", "obj": WOMEN},
                   {"typeId": "category", "id": "cat-pants", "obj": PANTS}]},
    {"id": "cat-socks", "name": {"en": "Socks"}, "ancestors": []},
    PANTS,
]
LOOKUP = product_lookup(PRODUCTS, CATEGORIES, locale="en")
CONFIG = OrderMappingConfig(locale="en", product_url_template="https://shop.example/p/{slug}")


def order(**overrides: Any) -> Order:
    doc = copy.deepcopy(ORDER)
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return Order.model_validate(doc)


def by_metric(events: list[Any], metric: str) -> list[Any]:
    return [e for e in events if e.metric == metric]


JEANS_ITEM = {
    "ProductID": "prod-1",
    "SKU": "JEANS-32",
    "ProductName": "Blue Jeans",
    "Quantity": 2,
    "ItemPrice": 50.0,
    "RowTotal": 90.0,
    "ProductURL": "https://shop.example/p/blue-jeans",
    "ImageURL": "https://img.example/jeans.png",
    "Categories": ["Women", "Women > Pants", "Women > Pants > Jeans"],
    "DiscountValue": 10.0,
}
SOCKS_ITEM = {
    "ProductID": "prod-2",
    "SKU": "SOCKS",
    "ProductName": "Socks",
    "Quantity": 1,
    "ItemPrice": 8.0,  # the product-discounted unit price
    "RowTotal": 8.0,
    "ProductURL": "https://shop.example/p/socks",  # no productSlug on the line: the product's
    "Categories": ["Socks", "Women", "Women > Pants"],
}
GIFT_WRAP_ITEM = {"ProductName": "Gift wrap", "Quantity": 1, "ItemPrice": 3.0, "RowTotal": 3.0}
# A registered customer's order events name the profile by external_id only, without the order's
# email/location snapshots (issue 14 §2; guest orders: tests/test_order_identity.py).
PROFILE = {"external_id": "cust-1"}
BILLING_ADDRESS = {"FirstName": "Jane", "Address1": "23, High Road", "City": "London",
                   "Region": "Greater London", "CountryCode": "GB", "Zip": "SW1A 1AA",
                   "Phone": "+442079460958"}


# ---- Placed Order ------------------------------------------------------------------------------


def test_placed_order_every_field() -> None:
    placed = placed_order_events(order(), LOOKUP, CONFIG)[0]
    assert placed.attributes() == {
        "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
        "profile": {"data": {"type": "profile", "attributes": PROFILE}},
        "properties": {
            "OrderId": "order-1",
            "OrderNumber": "A-1001",
            "ItemNames": ["Blue Jeans", "Socks", "Gift wrap"],
            "Categories": ["Women", "Women > Pants", "Women > Pants > Jeans", "Socks"],
            "Items": [JEANS_ITEM, SOCKS_ITEM, GIFT_WRAP_ITEM],
            "DiscountCode": "SPRING10",
            # 2 × 5.00 on the jeans + 4.55 on shipping + 2.00 on the total
            "DiscountValue": 16.55,
            "ShippingMethod": "Express",
            "ShippingValue": 5.45,
            "BillingAddress": BILLING_ADDRESS,
            "ShippingAddress": {**BILLING_ADDRESS, "City": "Leeds"},
        },
        "time": "2026-03-01T10:00:00.123Z",
        "unique_id": "order-1:placed",
        "value": 104.45,
        "value_currency": "EUR",
    }


def test_ordered_product_per_line_item_and_custom_line_item() -> None:
    events = placed_order_events(order(), LOOKUP, CONFIG)
    assert [e.metric for e in events] == ["Placed Order"] + ["Ordered Product"] * 3
    products = events[1:]
    assert [(e.unique_id, e.value, e.value_currency, e.time) for e in products] == [
        ("li-1", 90.0, "EUR", "2026-03-01T10:00:00.123Z"),
        ("li-2", 8.0, "EUR", "2026-03-01T10:00:00.123Z"),
        ("cli-1", 3.0, "EUR", "2026-03-01T10:00:00.123Z"),
    ]
    assert [e.properties for e in products] == [
        {"OrderId": "order-1", **JEANS_ITEM},
        {"OrderId": "order-1", **SOCKS_ITEM},
        {"OrderId": "order-1", **GIFT_WRAP_ITEM},
    ]
    # Location belongs on Placed Order only.
    assert all(e.profile == PROFILE for e in products)


def test_event_attributes_are_json_and_accepted_shape() -> None:
    for event in placed_order_events(order(), LOOKUP, CONFIG):
        body = json.loads(json.dumps(event.attributes()))
        assert set(body) == {"metric", "profile", "properties", "time", "unique_id", "value",
                             "value_currency"}


def test_bulk_entries_carry_the_single_event_bodies_grouped_by_profile() -> None:
    """Each bulk event is the POST /api/events body minus the profile, which its entry holds:
    a guest's Placed Order (with the location) in one entry, the Ordered Products in another."""
    events = placed_order_events(order(customerId=None), LOOKUP, CONFIG)
    entries = bulk_entries(events)
    assert [(e["profile"], len(e["events"])) for e in entries] == [
        (events[0].profile, 1), ({"email": "jane@example.org"}, 3)]
    rebuilt = [{**ev, "profile": {"data": {"type": "profile", "attributes": entry["profile"]}}}
               for entry in entries for ev in entry["events"]]
    assert rebuilt == [e.attributes() for e in events]
    assert all("backfill" not in ev for entry in entries for ev in entry["events"])
    assert bulk_entries([]) == []


@pytest.mark.parametrize(
    ("money", "expected"),
    [
        (eur(1999), 19.99),
        (eur(10), 0.1),
        (eur(123456789012), 1234567890.12),
        ({"type": "highPrecision", "currencyCode": "EUR", "centAmount": 1235,
          "preciseAmount": 123456, "fractionDigits": 4}, 12.3456),
        ({"type": "centPrecision", "currencyCode": "JPY", "centAmount": 1500,
          "fractionDigits": 0}, 1500.0),
        ({"type": "centPrecision", "currencyCode": "KWD", "centAmount": 12345,
          "fractionDigits": 3}, 12.345),
    ],
)
def test_money_in_major_units_decimal_exact(money: dict[str, Any], expected: float) -> None:
    placed = placed_order_events(order(totalPrice=money), LOOKUP, CONFIG)[0]
    assert placed.value == expected
    assert placed.value_currency == money["currencyCode"]
    assert json.dumps(placed.value) == json.dumps(expected)


def test_high_precision_line_item_prices() -> None:
    precise = {"type": "highPrecision", "currencyCode": "EUR", "centAmount": 33,
               "preciseAmount": 3333, "fractionDigits": 4}
    line = {"id": "li-p", "productId": "prod-9", "name": {"en": "Bolt"}, "quantity": 3,
            "price": {"value": precise}, "totalPrice": eur(100),
            "discountedPricePerQuantity": [{"quantity": 3, "discountedPrice": {
                "value": precise, "includedDiscounts": [{"discountedAmount": {
                    "type": "highPrecision", "currencyCode": "EUR", "centAmount": 0,
                    "preciseAmount": 1, "fractionDigits": 4}}]}}]}
    events = placed_order_events(order(lineItems=[line], customLineItems=[]), {}, CONFIG)
    assert events[1].properties == {"OrderId": "order-1", "ProductID": "prod-9",
                                    "ProductName": "Bolt", "Quantity": 3, "ItemPrice": 0.3333,
                                    "RowTotal": 1.0, "DiscountValue": 0.0003}


@pytest.mark.parametrize(
    ("overrides", "profile"),
    [
        ({}, PROFILE),
        ({"customerId": None}, {"email": "jane@example.org"}),
        ({"customerEmail": None}, {"external_id": "cust-1"}),
    ],
)
def test_profile_identifiers(overrides: dict[str, Any], profile: dict[str, Any]) -> None:
    events = placed_order_events(order(**overrides), LOOKUP, CONFIG)
    assert {k: v for k, v in events[0].profile.items() if k != "location"} == profile
    assert all(e.profile == profile for e in events[1:])


def test_order_without_customer_id_and_email_gives_no_events() -> None:
    anonymous = order(customerId=None, customerEmail=None)
    assert order_profile(anonymous) is None
    assert placed_order_events(anonymous, LOOKUP, CONFIG) == []
    assert state_change_event(anonymous, "Fulfilled Order", LOOKUP, CONFIG) is None
    assert order_events(anonymous, [], LOOKUP, CONFIG) == []


def test_no_billing_address_no_location() -> None:
    placed = placed_order_events(order(billingAddress=None), LOOKUP, CONFIG)[0]
    assert placed.profile == PROFILE


def test_minimal_order_omits_absent_parts() -> None:
    minimal = Order.model_validate({"id": "o-min", "customerEmail": "a@example.org",
                                    "createdAt": "2026-01-01T00:00:00Z",
                                    "totalPrice": eur(0)})
    (placed,) = placed_order_events(minimal, {}, OrderMappingConfig())
    assert placed.properties == {"OrderId": "o-min"}
    assert placed.value == 0.0
    assert placed.time == "2026-01-01T00:00:00.000Z"


def test_missing_products_and_no_template_leave_items_without_enrichment() -> None:
    placed = placed_order_events(order(), {}, OrderMappingConfig(locale="en"))[0]
    assert "Categories" not in placed.properties
    jeans = placed.properties["Items"][0]
    assert "ProductURL" not in jeans and "Categories" not in jeans
    assert jeans["ProductName"] == "Blue Jeans"


def test_preferred_locale() -> None:
    config = OrderMappingConfig(locale="de-DE", product_url_template="/p/{slug}")
    lookup = product_lookup(PRODUCTS, CATEGORIES, locale="de-DE")
    placed = placed_order_events(order(), lookup, config)[0]
    assert placed.properties["ItemNames"] == ["Blaue Jeans", "Socks", "Gift wrap"]
    jeans = placed.properties["Items"][0]
    assert jeans["ProductURL"] == "/p/blaue-jeans"
    assert jeans["Categories"][-1] == "Women > Pants > Jeans DE"


def test_multiple_shipping_mode_and_unexpanded_discount_code() -> None:
    placed = placed_order_events(order(
        shippingInfo=None,
        shipping=[
            {"shippingKey": "a", "shippingInfo": {"shippingMethodName": "Express",
                                                  "price": eur(500)}},
            {"shippingKey": "b", "shippingInfo": {"shippingMethodName": "Standard",
                                                  "price": eur(250)}},
        ],
        discountCodes=[{"discountCode": {"typeId": "discount-code", "id": "dc-1"}}],
        discountOnTotalPrice=None,
    ), LOOKUP, CONFIG)[0]
    assert placed.properties["ShippingMethod"] == "Express, Standard"
    assert placed.properties["ShippingValue"] == 7.5
    assert "DiscountCode" not in placed.properties  # an id is not a code
    assert placed.properties["DiscountValue"] == 10.0


def test_duplicate_item_names_and_categories_once() -> None:
    lines = copy.deepcopy(ORDER["lineItems"])
    lines[1] = {**lines[0], "id": "li-1b"}
    placed = placed_order_events(order(lineItems=lines, customLineItems=[]), LOOKUP, CONFIG)[0]
    assert placed.properties["ItemNames"] == ["Blue Jeans"]
    assert placed.properties["Categories"] == ["Women", "Women > Pants", "Women > Pants > Jeans"]
    assert len(placed.properties["Items"]) == 2


# ---- include / exclude / rename ----------------------------------------------------------------

GENERATED = list(placed_order_events(order(), LOOKUP, CONFIG)[0].properties)


@pytest.mark.parametrize(
    ("include", "exclude", "rename", "expected_extra"),
    [
        ((), (), {}, {}),
        (("orderNumber",), (), {}, {"orderNumber": "A-1001"}),
        (("store", "country", "notThere"), (), {},
         {"store": {"typeId": "store", "key": "eu"}, "country": "GB"}),
        (("store",), (), {"store": "Store"}, {"Store": {"typeId": "store", "key": "eu"}}),
        (("store", "country"), ("country",), {}, {"store": {"typeId": "store", "key": "eu"}}),
        (("custom.giftNote",), (), {}, {"giftNote": "Happy birthday"}),
        (("custom.giftNote",), (), {"custom.giftNote": "GiftNote"}, {"GiftNote": "Happy birthday"}),
        # falsy custom values are kept (the reference drops them: stale values in Klaviyo)
        (("custom.*",), ("custom.giftNote",), {}, {"newsletter": False, "points": 0}),
        # a raw field never replaces the Klaviyo structure
        (("id", "orderState"), (), {"id": "OrderId"}, {"orderState": "Open"}),
    ],
)
def test_include_exclude_rename(
    include: tuple[str, ...], exclude: tuple[str, ...], rename: dict[str, str],
    expected_extra: dict[str, Any],
) -> None:
    config = OrderMappingConfig(locale="en", properties_include=include,
                                properties_exclude=exclude, properties_rename=rename)
    properties = placed_order_events(order(), LOOKUP, config)[0].properties
    assert {k: v for k, v in properties.items() if k not in GENERATED} == expected_extra
    assert properties["OrderId"] == "order-1"


def test_include_star_selects_all_top_level_fields_minus_excluded() -> None:
    config = OrderMappingConfig(properties_include=("*",),
                                properties_exclude=("billingAddress", "shippingAddress",
                                                    "lineItems", "customerEmail"))
    properties = placed_order_events(order(), LOOKUP, config)[0].properties
    assert "billingAddress" not in properties and "customerEmail" not in properties
    assert properties["orderState"] == "Open" and properties["custom"]["fields"]["points"] == 0
    assert properties["id"] == "order-1"


def test_selected_fields_only_on_order_level_events() -> None:
    config = OrderMappingConfig(properties_include=("orderNumber",))
    events = placed_order_events(order(), LOOKUP, config)
    assert events[0].properties["orderNumber"] == "A-1001"
    assert all("orderNumber" not in e.properties for e in events[1:])


# ---- limits ------------------------------------------------------------------------------------


def test_more_than_4000_items_are_cut_deterministically() -> None:
    lines = [{"id": f"li-{i:05d}", "productId": "prod-1", "name": {"en": f"Item {i}"},
              "quantity": 1, "price": {"value": eur(100)}, "totalPrice": eur(100)}
             for i in range(MAX_ARRAY_ITEMS + 150)]
    big = order(lineItems=lines, customLineItems=[])
    events = placed_order_events(big, LOOKUP, CONFIG)
    placed = events[0]
    assert len(placed.properties["Items"]) == MAX_ARRAY_ITEMS
    assert placed.properties["Items"][-1]["ProductName"] == f"Item {MAX_ARRAY_ITEMS - 1}"
    assert len(placed.properties["ItemNames"]) == MAX_ARRAY_ITEMS
    # every line still gets its Ordered Product event
    assert len(events) == 1 + MAX_ARRAY_ITEMS + 150
    assert placed_order_events(big, LOOKUP, CONFIG)[0] == placed


def test_property_count_string_size_and_depth_limits() -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(12):
        deep = {"d": deep}
    fields: dict[str, Any] = {f"f{i:03d}": i for i in range(MAX_PROPERTIES + 20)}
    fields["huge"] = "é" * MAX_STRING_BYTES
    fields["deep"] = deep
    config = OrderMappingConfig(properties_include=("custom.huge", "custom.deep", "custom.*"))
    big = order(custom={"type": {"typeId": "type", "id": "t"}, "fields": fields})
    properties = placed_order_events(big, LOOKUP, config)[0].properties
    assert len(properties) == MAX_PROPERTIES
    assert len(properties["huge"].encode()) <= MAX_STRING_BYTES
    assert properties["huge"].startswith("éé")
    depth, node = 1, properties["deep"]
    while isinstance(node, dict) and "d" in node:
        depth, node = depth + 1, node["d"]
    assert depth == 9  # `deep` is level 2 of the properties: containers stop at level 10
    assert list(properties)[:len(GENERATED)] == GENERATED


def test_limit_properties_counts_and_keeps_small_input() -> None:
    small = {"OrderId": "o", "Items": [{"a": 1}], "x": None}
    assert limit_properties(small) == (small, 0)
    limited, cut = limit_properties({"Items": list(range(MAX_ARRAY_ITEMS + 5))})
    assert cut == 5 and len(limited["Items"]) == MAX_ARRAY_ITEMS


def test_total_size_budget_drops_raw_fields_then_shortens_items() -> None:
    chunk = "x" * (MAX_STRING_BYTES - 10)
    properties = {"OrderId": "o", "Items": [{"ProductName": chunk}] * 60,
                  **{f"raw{i}": chunk for i in range(5)}}
    limited, cut = limit_properties(properties)
    assert not any(k.startswith("raw") for k in limited)
    assert 0 < len(limited["Items"]) < 60
    assert len(json.dumps(limited)) <= 4 * 1024 * 1024
    assert cut > 5


# ---- state changes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_state", "shipment_state", "metrics"),
    [
        ("Open", None, []),
        ("Confirmed", None, ["Fulfilled Order"]),
        ("Complete", None, ["Fulfilled Order"]),
        ("Cancelled", None, ["Cancelled Order"]),
        (None, "Shipped", ["Fulfilled Order"]),
        (None, "Delivered", ["Fulfilled Order"]),
        (None, "Pending", []),
        ("Complete", "Shipped", ["Fulfilled Order"]),
        ("Cancelled", "Shipped", ["Cancelled Order", "Fulfilled Order"]),
    ],
)
def test_state_metrics_defaults(order_state: str | None, shipment_state: str | None,
                                metrics: list[str]) -> None:
    assert state_metrics(OrderMappingConfig(), order_state=order_state,
                         shipment_state=shipment_state) == metrics


def test_state_change_event() -> None:
    event = state_change_event(order(orderState="Complete"), "Fulfilled Order", LOOKUP, CONFIG,
                               time="2026-03-05T09:00:00Z")
    assert event is not None
    placed = placed_order_events(order(), LOOKUP, CONFIG)[0]
    assert (event.metric, event.unique_id, event.value, event.value_currency, event.time) == (
        "Fulfilled Order", "order-1:fulfilled", 104.45, "EUR", "2026-03-05T09:00:00.000Z")
    assert event.properties == placed.properties
    assert event.profile == PROFILE  # no location
    default_time = state_change_event(order(), "Cancelled Order", LOOKUP, CONFIG)
    assert default_time is not None and default_time.time == "2026-03-02T08:00:00.000Z"


@pytest.mark.parametrize(
    ("metric", "unique_id"),
    [
        ("Fulfilled Order", "order-1:fulfilled"),
        ("Cancelled Order", "order-1:cancelled"),
        ("Shipped Order", "order-1:shipped-order"),
    ],
)
def test_state_unique_ids(metric: str, unique_id: str) -> None:
    assert state_unique_id(order(), metric, OrderMappingConfig()) == unique_id


def test_config_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"CTP_PROJECT_KEY": "p", "CTP_CLIENT_ID": "c", "CTP_CLIENT_SECRET": "s",
           "CTP_API_URL": "https://api.example", "CTP_AUTH_URL": "https://auth.example",
           "KLAVIYO_API_KEY": "k", "METRIC_FULFILLED_ORDER": "Order Fulfilled",
           "ORDER_PROPERTIES_INCLUDE": "orderNumber, custom.giftNote",
           "ORDER_PROPERTIES_RENAME": '{"orderNumber": "Number"}',
           "PRODUCT_URL_TEMPLATE": "https://shop.example/{slug}", "PREFERRED_LOCALE": "de"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = OrderMappingConfig.from_settings(load_settings())
    assert config.order_state_metrics == {"Cancelled": "Cancelled Order",
                                          "Confirmed": "Order Fulfilled",
                                          "Complete": "Order Fulfilled"}
    assert config.shipment_state_metrics == {"Shipped": "Order Fulfilled",
                                             "Delivered": "Order Fulfilled"}
    assert config.properties_include == ("orderNumber", "custom.giftNote")
    assert config.properties_rename == {"orderNumber": "Number"}
    assert (config.locale, config.product_url_template) == ("de", "https://shop.example/{slug}")
    assert state_unique_id(order(), "Order Fulfilled", config) == "order-1:fulfilled"

    monkeypatch.setenv("ORDER_STATE_METRICS", '{"Complete": "Completed Order"}')
    monkeypatch.setenv("ORDER_SHIPMENT_STATE_METRICS", "{}")
    config = OrderMappingConfig.from_settings(load_settings())
    assert state_metrics(config, order_state="Complete", shipment_state="Shipped") == [
        "Completed Order"]
    assert state_metrics(config, order_state="Cancelled") == []


# ---- refunds -----------------------------------------------------------------------------------


def transaction(tid: str, type_: str = "Refund", state: str = "Success", cents: int = 1000,
                currency: str = "EUR", timestamp: str | None = "2026-03-10T12:00:00Z"
                ) -> dict[str, Any]:
    doc = {"id": tid, "type": type_, "state": state,
           "amount": {"currencyCode": currency, "centAmount": cents, "fractionDigits": 2}}
    if timestamp:
        doc["timestamp"] = timestamp
    return doc


PAYMENT = Payment.model_validate({"id": "pay-1", "transactions": [
    transaction("t-charge", "Charge", cents=10445),
    transaction("t-r1", cents=1000),
    transaction("t-r2", cents=550, currency="USD", timestamp=None),
    transaction("t-r3", state="Pending"),
    transaction("t-r4", state="Failure"),
]})


def test_successful_refunds_only() -> None:
    assert [t.id for t in successful_refunds(PAYMENT)] == ["t-r1", "t-r2"]


@pytest.mark.parametrize(
    ("tid", "expected"),
    [
        ("t-r1", ("t-r1", 10.0, "EUR", "2026-03-10T12:00:00.000Z")),
        ("t-r2", ("t-r2", 5.5, "USD", "2026-03-02T08:00:00.000Z")),  # no timestamp: order's
        ("t-r3", None),
        ("t-r4", None),
        ("t-charge", None),
    ],
)
def test_refund_event(tid: str, expected: tuple[Any, ...] | None) -> None:
    tx = next(t for t in PAYMENT.transactions if t.id == tid)
    event = refund_event(order(), PAYMENT, tx, LOOKUP, CONFIG)
    if expected is None:
        assert event is None
        return
    assert event is not None
    assert (event.unique_id, event.value, event.value_currency, event.time) == expected
    assert event.metric == "Refunded Order"
    assert event.profile == PROFILE
    assert event.properties["PaymentId"] == "pay-1"
    assert event.properties["OrderId"] == "order-1"


# ---- everything an order implies (bulk) --------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "shipment", "payments", "ids"),
    [
        ("Open", "Pending", [], ["order-1:placed", "li-1", "li-2", "cli-1"]),
        ("Complete", "Shipped", [PAYMENT],
         ["order-1:placed", "li-1", "li-2", "cli-1", "order-1:fulfilled", "t-r1", "t-r2"]),
        ("Cancelled", None, [], ["order-1:placed", "li-1", "li-2", "cli-1", "order-1:cancelled"]),
    ],
)
def test_order_events(state: str, shipment: str | None, payments: list[Payment],
                      ids: list[str]) -> None:
    events = order_events(order(orderState=state, shipmentState=shipment), payments, LOOKUP,
                          CONFIG)
    assert [e.unique_id for e in events] == ids
    again = order_events(order(orderState=state, shipmentState=shipment), payments, LOOKUP,
                         CONFIG)
    assert again == events  # deterministic: re-runs are deduplicated by Klaviyo


def test_order_events_match_realtime_events() -> None:
    complete = order(orderState="Complete")
    bulk = order_events(complete, [PAYMENT], LOOKUP, CONFIG)
    realtime: list[KlaviyoEvent | None] = list(placed_order_events(complete, LOOKUP, CONFIG))
    realtime.append(state_change_event(complete, "Fulfilled Order", LOOKUP, CONFIG))
    realtime += [refund_event(complete, PAYMENT, t, LOOKUP, CONFIG)
                 for t in successful_refunds(PAYMENT)]
    assert bulk == realtime


# ---- lookups and URLs --------------------------------------------------------------------------


def test_lookup_helpers() -> None:
    assert product_ids(order()) == ["prod-1", "prod-2"]
    assert category_ids(PRODUCTS) == ["cat-jeans", "cat-socks", "cat-pants"]
    assert LOOKUP["prod-1"] == ProductInfo(
        categories=("Women", "Women > Pants", "Women > Pants > Jeans"),
        slug="blue-jeans-product", key="jeans", slugs={"en": "blue-jeans-product"})


def test_lookup_ancestor_names_from_fetched_categories_and_bad_documents() -> None:
    unexpanded = [{**CATEGORIES[0], "ancestors": [{"typeId": "category", "id": "cat-women"},
                                                  {"typeId": "category", "id": "cat-pants"},
                                                  {"typeId": "category", "id": "cat-gone"}]},
                  WOMEN, PANTS]
    broken: list[dict[str, Any]] = [{"key": "no-id"},
                                    {"id": "bad", "masterData": {"current": {"categories": 3}}}]
    lookup = product_lookup([PRODUCTS[0], *broken], unexpanded + [{"name": "x"}])
    assert lookup == {"prod-1": ProductInfo(
        categories=("Women", "Women > Pants", "Women > Pants > Jeans"),
        slug="blue-jeans-product", key="jeans", slugs={"en": "blue-jeans-product"})}


@pytest.mark.parametrize(
    ("template", "values", "url"),
    [
        (None, {}, None),
        ("https://s.example/p/{slug}", {"slug": "blue-jeans"}, "https://s.example/p/blue-jeans"),
        ("https://s.example/p/{{productSlug}}", {"slug": "a"}, "https://s.example/p/a"),
        ("https://s.example/{id}?sku={sku}", {"product_id": "p1", "sku": "A B/1"},
         "https://s.example/p1?sku=A%20B%2F1"),
        ("https://s.example/{key}", {"key": "jeans"}, "https://s.example/jeans"),
        ("https://s.example/p/{slug}", {"product_id": "p1"}, None),  # no slug: no half URL
        ("https://s.example/{{literal}}/{id}", {"product_id": "p1"},
         "https://s.example/{literal}/p1"),
    ],
)
def test_product_url(template: str | None, values: dict[str, str], url: str | None) -> None:
    arguments = {"slug": None, "product_id": None, "sku": None, **values}
    assert product_url(template, **arguments) == url
