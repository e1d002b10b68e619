"""Fuzzing every mapper with near-valid commercetools resources (hypothesis).

The strategies build documents shaped like commercetools' (customers, orders, payments, products,
categories, inventory entries, carts) with arbitrary values, then optionally damage them: a key
removed, a value replaced by arbitrary JSON or null. Properties: a document either fails model
validation (the processors then acknowledge without writing) or maps without an exception to a
payload that serialises as JSON (requests would raise on anything else, a retry loop).

Derandomized with modest example counts for CI; FUZZ_EXAMPLES=1000 for a deeper run by hand.
tests/test_fuzz_messages.py reuses these strategies end to end through the realtime function.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.commercetools.messages import parse_ct_message
from shared.commercetools.models.cart import Cart
from shared.commercetools.models.category import Category
from shared.commercetools.models.customer import Customer
from shared.commercetools.models.inventory import InventoryEntry
from shared.commercetools.models.order import Order
from shared.commercetools.models.payment import Payment
from shared.commercetools.models.product import Product
from shared.errors import MessageError
from shared.mapping.catalog import (
    CatalogConfig,
    item_attributes,
    split_variants,
    variant_attributes,
)
from shared.mapping.catalog_categories import category_attributes
from shared.mapping.catalog_stock import inventory_quantity
from shared.mapping.checkout import CheckoutMappingConfig, started_checkout_event
from shared.mapping.consent import ConsentConfig, consent_change, decisions
from shared.mapping.customers import map_profile
from shared.mapping.orders import OrderMappingConfig, order_events
from shared.mapping.products import ProductInfo
from shared.pubsub import decode_pubsub_event

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---- JSON and commercetools building blocks ---------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-(2**53), 2**53)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
ids = st.uuids().map(str) | st.text(min_size=1, max_size=40)
texts = st.text(max_size=30)
localized = st.dictionaries(st.sampled_from(["en", "de", "fr-CH", "x"]), texts, max_size=3)
emails = st.emails().map(str) | st.text(max_size=30)
currencies = st.sampled_from(["EUR", "USD", "CHF", "JPY", "GBP"]) | st.text(max_size=4)
timestamps = (st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                           timezones=st.just(UTC))
              .map(lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
              | st.text(max_size=25))


@st.composite
def money(draw: Any) -> dict[str, Any]:
    doc = {"type": "centPrecision", "currencyCode": draw(currencies),
           "centAmount": draw(st.integers(-(10**12), 10**12)),
           "fractionDigits": draw(st.integers(0, 4))}
    if draw(st.booleans()):
        doc["type"] = "highPrecision"
        doc["preciseAmount"] = draw(st.integers(-(10**15), 10**15))
        doc["fractionDigits"] = draw(st.integers(0, 20))
    return doc


def reference(type_id: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"typeId": st.just(type_id), "id": ids})


@st.composite
def address(draw: Any) -> dict[str, Any]:
    keys = ["id", "streetName", "streetNumber", "postalCode", "city", "region", "country",
            "building", "apartment", "additionalStreetInfo", "additionalAddressInfo", "phone",
            "mobile", "firstName", "lastName"]
    doc = {k: draw(texts) for k in draw(st.lists(st.sampled_from(keys), unique=True))}
    if draw(st.booleans()):
        doc["mobile"] = draw(st.from_regex(r"\A(\+|00)?[1-9][0-9 ()./-]{5,16}\Z"))
    return doc


@st.composite
def customer(draw: Any) -> dict[str, Any]:
    addresses = draw(st.lists(address(), max_size=3))
    doc: dict[str, Any] = {"id": draw(ids), "version": draw(st.integers(1, 99)),
                           "email": draw(emails), "firstName": draw(texts),
                           "lastName": draw(texts), "addresses": addresses,
                           "createdAt": draw(timestamps)}
    if addresses and draw(st.booleans()):
        doc["defaultBillingAddressId"] = addresses[0].get("id", "none")
    if draw(st.booleans()):
        doc["custom"] = {"type": {"typeId": "type", "id": "t"},
                         "fields": draw(st.dictionaries(st.sampled_from(
                             ["newsletter", "sms", "tier", "x"]), json_values, max_size=3))}
    return doc


@st.composite
def line_item(draw: Any) -> dict[str, Any]:
    price = draw(money())
    return {"id": draw(ids), "productId": draw(ids), "name": draw(localized),
            "productSlug": draw(localized),
            "variant": {"id": draw(st.integers(1, 50)), "sku": draw(texts),
                        "images": draw(st.lists(st.fixed_dictionaries({"url": texts}),
                                                max_size=2))},
            "price": {"value": price}, "quantity": draw(st.integers(0, 10**6)),
            "totalPrice": draw(money()),
            "discountedPricePerQuantity": draw(st.lists(st.fixed_dictionaries({
                "quantity": st.integers(0, 5), "discountedPrice": st.fixed_dictionaries({
                    "value": money(), "includedDiscounts": st.lists(st.fixed_dictionaries({
                        "discount": reference("cart-discount"),
                        "discountedAmount": money()}), max_size=2)})}), max_size=2))}


@st.composite
def custom_line_item(draw: Any) -> dict[str, Any]:
    return {"id": draw(ids), "name": draw(localized), "slug": draw(texts), "money": draw(money()),
            "totalPrice": draw(money()), "quantity": draw(st.integers(0, 100))}


@st.composite
def transaction(draw: Any) -> dict[str, Any]:
    return {"id": draw(ids), "type": draw(st.sampled_from(["Charge", "Refund", "Authorization"])),
            "state": draw(st.sampled_from(["Initial", "Pending", "Success", "Failure"])),
            "amount": draw(money()), "timestamp": draw(timestamps)}


@st.composite
def payment(draw: Any) -> dict[str, Any]:
    return {"id": draw(ids), "version": 1, "amountPlanned": draw(money()),
            "transactions": draw(st.lists(transaction(), max_size=3))}


@st.composite
def order(draw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": draw(ids), "version": 1, "orderNumber": draw(texts),
        "customerEmail": draw(emails), "createdAt": draw(timestamps),
        "lastModifiedAt": draw(timestamps),
        "orderState": draw(st.sampled_from(["Open", "Confirmed", "Complete", "Cancelled"])),
        "shipmentState": draw(st.sampled_from(["Pending", "Shipped", "Delivered", "Ready"])),
        "totalPrice": draw(money()), "lineItems": draw(st.lists(line_item(), max_size=3)),
        "customLineItems": draw(st.lists(custom_line_item(), max_size=2)),
        "shippingInfo": {"shippingMethodName": draw(texts), "price": draw(money())},
        "discountCodes": draw(st.lists(st.fixed_dictionaries({
            "discountCode": reference("discount-code"), "state": texts}), max_size=2)),
    }
    if draw(st.booleans()):
        doc["customerId"] = draw(ids)
    if draw(st.booleans()):
        doc["billingAddress"] = draw(address())
    if draw(st.booleans()):
        doc["custom"] = {"type": {"typeId": "type", "id": "t"},
                         "fields": draw(st.dictionaries(texts, json_values, max_size=3))}
    refs = draw(st.lists(payment(), max_size=2))
    doc["paymentInfo"] = {"payments": [{"typeId": "payment", "id": p["id"], "obj": p}
                                       for p in refs]}
    return doc


@st.composite
def variant(draw: Any, number: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": number, "prices": draw(st.lists(st.fixed_dictionaries(
            {"value": money()}, optional={"country": st.sampled_from(["DE", "CH", "US", "x"]),
                                          "validFrom": timestamps, "validUntil": timestamps}),
            max_size=3)),
        "images": draw(st.lists(st.fixed_dictionaries({"url": texts}), max_size=2)),
    }
    if draw(st.integers(0, 9)):
        doc["sku"] = draw(st.text(min_size=1, max_size=20))
    if draw(st.booleans()):
        doc["availability"] = {"availableQuantity": draw(st.integers(-(10**6), 10**9)),
                               "channels": draw(st.dictionaries(texts, st.fixed_dictionaries(
                                   {"availableQuantity": st.integers(-5, 10**6)}), max_size=2))}
    return doc


@st.composite
def product(draw: Any) -> dict[str, Any]:
    count = draw(st.integers(1, 4))
    variants = [draw(variant(i + 1)) for i in range(count)]
    category_refs = draw(st.lists(st.fixed_dictionaries(
        {"typeId": st.just("category"), "id": ids},
        optional={"obj": st.fixed_dictionaries({"ancestors": st.lists(reference("category"),
                                                                       max_size=2)})}),
        max_size=2))
    data = {"name": draw(localized), "description": draw(localized), "slug": draw(localized),
            "categories": category_refs, "masterVariant": variants[0], "variants": variants[1:]}
    return {"id": draw(ids), "version": 1, "key": draw(texts),
            "masterData": {"published": draw(st.booleans()), "current": data, "staged": data,
                           "hasStagedChanges": False}}


@st.composite
def category(draw: Any) -> dict[str, Any]:
    ancestors = draw(st.lists(st.fixed_dictionaries(
        {"typeId": st.just("category"), "id": ids},
        optional={"obj": st.fixed_dictionaries({"name": localized}, optional={"key": texts})}),
        max_size=3))
    return {"id": draw(ids), "version": 1, "name": draw(localized), "key": draw(texts),
            "slug": draw(localized), "ancestors": ancestors}


@st.composite
def inventory_entry(draw: Any) -> dict[str, Any]:
    doc = {"id": draw(ids), "version": 1, "sku": draw(st.text(min_size=1, max_size=20)),
           "quantityOnStock": draw(st.integers(-10, 10**9)),
           "availableQuantity": draw(st.integers(-10, 10**9))}
    if draw(st.booleans()):
        doc["supplyChannel"] = {
            "typeId": "channel", "id": draw(st.sampled_from(["chan-1", "chan-2"]))}
    return doc


@st.composite
def cart(draw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": draw(ids), "version": 1, "cartState": draw(st.sampled_from(
            ["Active", "Ordered", "Merged", "Frozen", "Other"])),
        "customerEmail": draw(emails), "lineItems": draw(st.lists(line_item(), max_size=3)),
        "customLineItems": draw(st.lists(custom_line_item(), max_size=1)),
        "totalPrice": draw(money()), "createdAt": draw(timestamps),
        "lastModifiedAt": draw(timestamps),
    }
    if draw(st.booleans()):
        doc["shippingAddress"] = draw(address())
    if draw(st.booleans()):
        doc["customerId"] = draw(ids)
    return doc


def _slots(node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, value in list(items):
        out.append((node, key))
        _slots(value, out)
    return out


@st.composite
def damaged(draw: Any, base: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """`base`'s document, then up to three edits anywhere in it: a key removed, a value replaced
    by arbitrary JSON or by null."""
    doc = draw(base)
    for _ in range(draw(st.integers(0, 3))):
        slots = _slots(doc, [])
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["remove", "replace", "null"]))
        if action == "remove" and isinstance(container, dict):
            del container[key]
        elif action == "null":
            container[key] = None
        else:
            container[key] = draw(json_values)
    return doc


def as_json(value: Any) -> Any:
    """The payload as requests would send it: must serialise without a custom encoder."""
    return json.loads(json.dumps(value, allow_nan=False))


def validated(model: Any, doc: dict[str, Any]) -> Any:
    try:
        return model.model_validate(doc)
    except ValidationError:
        return None


# ---- properties -------------------------------------------------------------------------------


@FUZZ
@given(damaged(customer()))
def test_customer_mapping(doc: dict[str, Any]) -> None:
    customer_model = validated(Customer, doc)
    if customer_model is not None:
        as_json(map_profile(customer_model, include=(), exclude=("x",)))
        config = ConsentConfig(email_field="newsletter", sms_field="sms", list_id="L")
        for allow in (True, False):
            wanted = decisions(customer_model, config, channels=None, allow_unsubscribe=allow,
                               removed_means_withdrawn=not allow)
            change = consent_change(customer_model, config, wanted)
            as_json([change.subscribe, change.unsubscribe])


@FUZZ
@given(damaged(order()))
def test_order_mapping(doc: dict[str, Any]) -> None:
    order_model = validated(Order, doc)
    if order_model is None:
        return
    payments = [p for p in (validated(Payment, ref.get("obj") or {}) for ref in
                            ((doc.get("paymentInfo") or {}).get("payments") or [])
                            if isinstance(ref, dict)) if p is not None]
    lookup = {li.product_id: ProductInfo(categories=("A", "A > B"), slug="s", key="k")
              for li in order_model.line_items if li.product_id}
    config = OrderMappingConfig(product_url_template="https://shop.example/{slug}/{sku}",
                                properties_include=("*",))
    for event in order_events(order_model, payments, lookup, config):
        as_json(event.attributes())


@FUZZ
@given(damaged(product()), st.sampled_from([None, "EUR", "CHF"]))
def test_product_mapping(doc: dict[str, Any], currency: str | None) -> None:
    product_model = validated(Product, doc)
    if product_model is None:
        return
    config = CatalogConfig(locale="en", currency=currency,
                           url_template="https://shop.example/{slug}?sku={sku}",
                           inventory_channel_id="chan-1")
    as_json(item_attributes(product_model, config))
    variants, _ = split_variants(product_model.master_data.current)
    for v in variants:
        as_json(variant_attributes(product_model, v, config))


@FUZZ
@given(damaged(category()), st.sampled_from([None, "en", "de"]))
def test_category_mapping(doc: dict[str, Any], locale: str | None) -> None:
    category_model = validated(Category, doc)
    if category_model is not None:
        attributes = as_json(category_attributes(category_model, locale))
        assert isinstance(attributes["name"], str)


@FUZZ
@given(st.lists(damaged(inventory_entry()), max_size=4))
def test_inventory_mapping(docs: list[dict[str, Any]]) -> None:
    entries = [e for e in (validated(InventoryEntry, d) for d in docs) if e is not None]
    assert isinstance(inventory_quantity(entries, "chan-1"), int)


@FUZZ
@given(damaged(cart()), st.sampled_from(["shipping_address", "any_update"]))
def test_cart_mapping(doc: dict[str, Any], signal: str) -> None:
    from shared.mapping.checkout import parse_checkout_signal

    cart_model = validated(Cart, doc)
    if cart_model is None:
        return
    config = CheckoutMappingConfig(signal=parse_checkout_signal(signal),
                                   checkout_url_template="https://shop.example/c/{cartId}")
    event = started_checkout_event(cart_model, {}, config, customer_email="a@example.org")
    if event is not None:
        as_json(event.attributes())


@FUZZ
@given(json_values | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
def test_message_decoding_only_raises_message_error(data: Any) -> None:
    """Whatever a Pub/Sub delivery holds, decoding yields a message or a MessageError."""
    import base64

    for event_data in (data, {"message": data},
                       {"message": {"data": base64.b64encode(json.dumps(data).encode()).decode()}},
                       {"message": {"data": data}}):
        try:
            parse_ct_message(decode_pubsub_event(event_data).json())
        except MessageError:
            pass


@FUZZ
@given(damaged(st.fixed_dictionaries({
    "notificationType": st.sampled_from(["Message", "ResourceCreated", "ResourceUpdated",
                                         "ResourceDeleted"]),
    "projectKey": texts, "id": ids, "version": st.integers(),
    "sequenceNumber": st.integers(), "resourceVersion": st.integers(),
    "resource": st.fixed_dictionaries({"typeId": st.sampled_from(
        ["customer", "order", "payment", "product", "category", "inventory-entry", "cart",
         "subscription"]), "id": ids}),
    "type": texts, "createdAt": timestamps,
    "payloadNotIncluded": st.fixed_dictionaries({"reason": texts, "payloadType": texts}),
    "resourceUserProvidedIdentifiers": st.dictionaries(texts, json_values, max_size=2),
})))
def test_delivery_parsing(delivery: dict[str, Any]) -> None:
    try:
        message = parse_ct_message(delivery)
    except MessageError:
        return
    assert isinstance(message.message_type, str) and isinstance(message.log_id, str)
    assert message.payload is delivery or message.payload == delivery
