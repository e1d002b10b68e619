"""Table tests of the cart → Started Checkout mapping (shared/mapping/checkout.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.commercetools.models.cart import Cart
from shared.config import load_settings
from shared.errors import ConfigError
from shared.mapping.checkout import (
    CheckoutMappingConfig,
    CheckoutSignal,
    basket_hash,
    checkout_profile,
    checkout_unique_id,
    checkout_url,
    parse_checkout_signal,
    skip_reason,
    started_checkout_event,
)
from shared.mapping.products import ProductInfo
from shared.setting_syntax import check_checkout_url_template


def eur(cents: int) -> dict[str, Any]:
    return {"type": "centPrecision", "currencyCode": "EUR", "centAmount": cents,
            "fractionDigits": 2}


CART: dict[str, Any] = {
    "id": "cart-1",
    "version": 9,
    "cartState": "Active",
    "customerId": "cust-1",
    "customerEmail": "jane@example.org",
    "createdAt": "2026-03-01T09:00:00.000Z",
    "lastModifiedAt": "2026-03-01T10:15:30.456Z",
    "totalPrice": eur(4797),
    "lineItems": [
        {
            "id": "li-1", "productId": "prod-1", "productKey": "tee",
            "name": {"en": "T-Shirt", "de": "Hemd"}, "productSlug": {"en": "t-shirt"},
            "variant": {"id": 2, "sku": "TEE-M",
                        "images": [{"url": "https://img.example/tee.png",
                                    "dimensions": {"w": 1, "h": 1}}]},
            "price": {"value": eur(1999)}, "quantity": 2, "totalPrice": eur(3998),
        },
        {
            "id": "li-2", "productId": "prod-2", "name": {"en": "Socks"},
            "variant": {"id": 1, "sku": "SOCKS"},
            "price": {"value": eur(500)}, "quantity": 1, "totalPrice": eur(500),
        },
    ],
    "customLineItems": [
        {"id": "cli-1", "name": {"en": "Gift wrap"}, "slug": "gift-wrap", "money": eur(299),
         "totalPrice": eur(299), "quantity": 1},
    ],
    "shippingAddress": {"country": "DE", "city": "Berlin", "streetName": "Hauptstr."},
    "custom": {"type": {"typeId": "type", "id": "t"}, "fields": {"checkoutStarted": True}},
}
LOOKUP = {
    "prod-1": ProductInfo(categories=("Men", "Men > Shirts"), slug="t-shirt", key="tee"),
    "prod-2": ProductInfo(categories=("Men", "Accessories")),
}
CONFIG = CheckoutMappingConfig(
    checkout_url_template="https://shop.example/checkout?cart={cartId}",
    product_url_template="https://shop.example/p/{slug}",
)


def cart(**changes: Any) -> Cart:
    doc = copy.deepcopy(CART)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return Cart.model_validate(doc)


def test_started_checkout_event_in_klaviyos_recommended_shape() -> None:
    event = started_checkout_event(cart(), LOOKUP, CONFIG)

    assert event is not None
    assert event.attributes() == {
        "metric": {"data": {"type": "metric", "attributes": {"name": "Started Checkout"}}},
        "profile": {"data": {"type": "profile", "attributes": {
            "email": "jane@example.org", "external_id": "cust-1"}}},
        "properties": {
            "CartId": "cart-1",
            "CheckoutURL": "https://shop.example/checkout?cart=cart-1",
            "ItemNames": ["T-Shirt", "Socks", "Gift wrap"],
            "Categories": ["Men", "Men > Shirts", "Accessories"],
            "Items": [
                {"ProductID": "prod-1", "SKU": "TEE-M", "ProductName": "T-Shirt", "Quantity": 2,
                 "ItemPrice": 19.99, "RowTotal": 39.98,
                 "ProductURL": "https://shop.example/p/t-shirt",
                 "ImageURL": "https://img.example/tee.png", "Categories": ["Men", "Men > Shirts"]},
                {"ProductID": "prod-2", "SKU": "SOCKS", "ProductName": "Socks", "Quantity": 1,
                 "ItemPrice": 5.0, "RowTotal": 5.0, "Categories": ["Men", "Accessories"]},
                {"ProductName": "Gift wrap", "Quantity": 1, "ItemPrice": 2.99, "RowTotal": 2.99},
            ],
        },
        "time": "2026-03-01T10:15:30.456Z",
        "unique_id": f"cart-1:checkout:{basket_hash(cart())}",
        "value": 47.97,
        "value_currency": "EUR",
    }


def test_minimal_config_leaves_out_what_it_cannot_fill() -> None:
    """No CHECKOUT_URL_TEMPLATE / PRODUCT_URL_TEMPLATE, no product lookup: no empty values."""
    event = started_checkout_event(cart(customerId=None), {}, CheckoutMappingConfig())

    assert event is not None
    assert event.profile == {"email": "jane@example.org"}
    assert set(event.properties) == {"CartId", "ItemNames", "Items"}
    assert event.properties["Items"][1] == {"ProductID": "prod-2", "SKU": "SOCKS",
                                            "ProductName": "Socks", "Quantity": 1,
                                            "ItemPrice": 5.0, "RowTotal": 5.0}


def test_preferred_locale_names_the_items() -> None:
    event = started_checkout_event(cart(), {}, CheckoutMappingConfig(locale="de-DE"))
    assert event is not None and event.properties["ItemNames"][0] == "Hemd"


SHIPPING_SIGNAL = CheckoutMappingConfig()


@pytest.mark.parametrize(
    ("changes", "config", "reason"),
    [
        ({}, SHIPPING_SIGNAL, None),
        ({"cartState": "Frozen"}, SHIPPING_SIGNAL, None),  # frozen for payment: in checkout
        ({"cartState": "Ordered"}, SHIPPING_SIGNAL, "cart ordered"),
        ({"cartState": "Merged"}, SHIPPING_SIGNAL, "cart merged"),
        ({"lineItems": [], "customLineItems": []}, SHIPPING_SIGNAL, "cart empty"),
        ({"lineItems": []}, SHIPPING_SIGNAL, None),  # a custom line item is still a basket
        ({"shippingAddress": None}, SHIPPING_SIGNAL, "no checkout signal"),
        ({"shippingAddress": None}, CheckoutMappingConfig(signal=CheckoutSignal("any_update")),
         None),
        ({"shippingAddress": None},
         CheckoutMappingConfig(signal=CheckoutSignal("custom_field", "checkoutStarted")), None),
        ({"custom": {"fields": {"checkoutStarted": False}}},
         CheckoutMappingConfig(signal=CheckoutSignal("custom_field", "checkoutStarted")),
         "no checkout signal"),
        ({"custom": {"fields": {"checkoutStarted": ""}}},
         CheckoutMappingConfig(signal=CheckoutSignal("custom_field", "checkoutStarted")),
         "no checkout signal"),
        ({"custom": {"fields": {"checkoutStep": "payment"}}},
         CheckoutMappingConfig(signal=CheckoutSignal("custom_field", "checkoutStep")), None),
        ({"custom": None},
         CheckoutMappingConfig(signal=CheckoutSignal("custom_field", "checkoutStarted")),
         "no checkout signal"),
    ],
    ids=["active-with-address", "frozen", "ordered", "merged", "empty", "custom-lines-only",
         "no-address", "any-update", "custom-field-true", "custom-field-false",
         "custom-field-empty", "custom-field-text", "no-custom-fields"],
)
def test_which_carts_are_in_checkout(
    changes: dict[str, Any], config: CheckoutMappingConfig, reason: str | None
) -> None:
    subject = cart(**changes)
    assert skip_reason(subject, config) == reason
    assert (started_checkout_event(subject, {}, config) is None) == (reason is not None)


@pytest.mark.parametrize(
    ("changes", "customer_email", "profile"),
    [
        ({}, None, {"email": "jane@example.org", "external_id": "cust-1"}),
        ({"customerEmail": None}, "customer@example.org",
         {"email": "customer@example.org", "external_id": "cust-1"}),
        ({}, "customer@example.org", {"email": "jane@example.org", "external_id": "cust-1"}),
        ({"customerId": None}, None, {"email": "jane@example.org"}),
        ({"customerEmail": None}, None, None),
        ({"customerEmail": None, "customerId": None, "anonymousId": "anon-1"}, None, None),
    ],
    ids=["cart-email", "customer-email", "cart-email-wins", "guest", "no-email", "anonymous"],
)
def test_profile_needs_an_email(
    changes: dict[str, Any], customer_email: str | None, profile: dict[str, Any] | None
) -> None:
    subject = cart(**changes)
    assert checkout_profile(subject, customer_email) == profile
    event = started_checkout_event(subject, {}, CONFIG, customer_email=customer_email)
    assert (event.profile if event else None) == profile


def _lines(*lines: tuple[str, int, int]) -> list[dict[str, Any]]:
    return [{"id": f"li-{i}", "productId": p, "name": {"en": p}, "variant": {"id": v},
             "price": {"value": eur(100)}, "quantity": q, "totalPrice": eur(100 * q)}
            for i, (p, v, q) in enumerate(lines)]


BASE_LINES = _lines(("prod-1", 2, 2), ("prod-2", 1, 1))


@pytest.mark.parametrize(
    ("changes", "same"),
    [
        ({}, True),
        ({"lineItems": list(reversed(BASE_LINES))}, True),  # order of lines
        ({"lineItems": [{**li, "id": f"new-{li['id']}"} for li in BASE_LINES]}, True),
        ({"lineItems": [{**li, "price": {"value": eur(1)}} for li in BASE_LINES]}, True),
        ({"shippingAddress": {"country": "FR"}}, True),
        ({"version": 99, "lastModifiedAt": "2026-03-02T00:00:00.000Z"}, True),
        ({"customerEmail": "other@example.org"}, True),  # another profile: Klaviyo keys by it
        ({"lineItems": _lines(("prod-1", 2, 3), ("prod-2", 1, 1))}, False),  # quantity
        ({"lineItems": _lines(("prod-1", 3, 2), ("prod-2", 1, 1))}, False),  # variant
        ({"lineItems": _lines(("prod-1", 2, 2))}, False),  # a line removed
        ({"lineItems": _lines(("prod-1", 2, 2), ("prod-2", 1, 1), ("prod-3", 1, 1))}, False),
        ({"customLineItems": []}, False),  # gift wrap removed
    ],
    ids=["same", "reordered", "new-line-ids", "repriced", "address", "version", "email",
         "quantity", "variant", "removed", "added", "custom-line-removed"],
)
def test_unique_id_changes_with_the_basket_only(changes: dict[str, Any], same: bool) -> None:
    before = cart(lineItems=BASE_LINES)
    after = cart(**{"lineItems": BASE_LINES, **changes})
    assert (checkout_unique_id(before) == checkout_unique_id(after)) is same
    assert checkout_unique_id(before).startswith("cart-1:checkout:")
    assert len(checkout_unique_id(before)) <= 255


def test_unique_id_differs_between_carts_with_the_same_basket() -> None:
    assert checkout_unique_id(cart()) != checkout_unique_id(cart(id="cart-2"))


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("shipping_address", CheckoutSignal("shipping_address")),
        (" any_update ", CheckoutSignal("any_update")),
        ("custom_field:checkoutStarted", CheckoutSignal("custom_field", "checkoutStarted")),
        ("custom_field: step ", CheckoutSignal("custom_field", "step")),
    ],
)
def test_checkout_signal_syntax(text: str, signal: CheckoutSignal) -> None:
    assert parse_checkout_signal(text) == signal


@pytest.mark.parametrize("text", ["", "custom_field", "custom_field:", "billing_address", "any"])
def test_bad_checkout_signal_is_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_checkout_signal(text)


@pytest.mark.parametrize(
    ("template", "url"),
    [
        ("https://shop.example/checkout/{cartId}", "https://shop.example/checkout/cart%2F1%3F"),
        ("https://shop.example/c?id={cartId}&x={{y}}",
         "https://shop.example/c?id=cart%2F1%3F&x={y}"),
        (None, None),
    ],
)
def test_checkout_url(template: str | None, url: str | None) -> None:
    if template:
        check_checkout_url_template(template)
    assert checkout_url(template, "cart/1?") == url


@pytest.mark.parametrize("template", ["https://x/{cart}", "https://x/{cartId!r}", "https://x/{"])
def test_bad_checkout_url_template_is_rejected(template: str) -> None:
    with pytest.raises(ValueError):
        check_checkout_url_template(template)


REQUIRED = {"ctp_project_key": "p", "ctp_client_id": "i", "ctp_client_secret": "s",
            "ctp_api_url": "http://ct", "ctp_auth_url": "http://ct", "klaviyo_api_key": "k"}


def test_settings_defaults_and_config() -> None:
    settings = load_settings(**REQUIRED)
    assert settings.checkout_signal == "shipping_address"
    assert settings.metric_started_checkout == "Started Checkout"
    assert settings.checkout_url_template is None
    config = CheckoutMappingConfig.from_settings(load_settings(
        **REQUIRED, checkout_signal="custom_field:step", checkout_url_template=" ",
        metric_started_checkout="Checkout Started", preferred_locale="de",
    ))
    assert config == CheckoutMappingConfig(metric="Checkout Started",
                                           signal=CheckoutSignal("custom_field", "step"),
                                           locale="de")


@pytest.mark.parametrize(
    ("setting", "value", "variable"),
    [
        ("checkout_signal", "billing_address", "CHECKOUT_SIGNAL"),
        ("checkout_url_template", "https://x/{id}", "CHECKOUT_URL_TEMPLATE"),
        ("metric_started_checkout", "", "METRIC_STARTED_CHECKOUT"),
    ],
)
def test_bad_checkout_setting_fails_naming_it(setting: str, value: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(**REQUIRED, **{setting: value})


def test_checkout_items_follow_the_order_item_attribute_settings() -> None:
    from shared.config import load_settings
    from shared.mapping.checkout import CheckoutMappingConfig

    settings = load_settings(
        ctp_project_key="p", ctp_client_id="c", ctp_client_secret="s",
        ctp_api_url="http://ct", ctp_auth_url="http://ct", klaviyo_api_key="k",
        order_item_attributes_include="size,brand", order_item_attributes_exclude="brand",
        order_brand_attribute="brand",
    )
    # The checkout config is itself what the Items[] builder reads (line_items.ItemSettings).
    item_config = CheckoutMappingConfig.from_settings(settings)
    assert (item_config.item_attributes_include, item_config.item_attributes_exclude,
            item_config.brand_attribute) == (("size", "brand"), ("brand",), "brand")
