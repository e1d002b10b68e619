"""Table tests of what issue 15 §1 adds to the order mapping — variant attributes, Brand/Brands,
BillingAddress/ShippingAddress, TotalTax, US state as region, one locale per line item,
PLACED_ORDER_STATES — and the §4 gaps (settings → mapping, exact limits, rare shapes)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.commercetools.models.customer import Address
from shared.commercetools.models.order import Order
from shared.commercetools.models.payment import Payment
from shared.config import load_settings
from shared.mapping.attributes import attribute_values, display_value
from shared.mapping.common import resource_locale
from shared.mapping.limits import (
    MAX_ARRAY_ITEMS,
    MAX_DEPTH,
    MAX_PROPERTIES,
    MAX_PROPERTIES_BYTES,
    MAX_STRING_BYTES,
    _size,
    limit_properties,
)
from shared.mapping.line_items import custom_line_item_properties, item_brand, line_item_properties
from shared.mapping.order_properties import order_address, order_properties, total_tax
from shared.mapping.orders import (
    OrderMappingConfig,
    order_events,
    placed_order_events,
    placed_order_wanted,
)
from shared.mapping.products import ProductInfo, product_lookup

BASE_ENV = {"CTP_PROJECT_KEY": "p", "CTP_CLIENT_ID": "c", "CTP_CLIENT_SECRET": "s",
            "CTP_API_URL": "https://api.example", "CTP_AUTH_URL": "https://auth.example",
            "KLAVIYO_API_KEY": "k"}


def eur(cents: int, digits: int = 2) -> dict[str, Any]:
    return {"type": "centPrecision", "currencyCode": "EUR", "centAmount": cents,
            "fractionDigits": digits}


def line(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "li-1", "productId": "prod-1", "name": {"en": "Jeans", "de": "Jeans DE"},
        "productSlug": {"en": "jeans", "de": "jeans-de"},
        "variant": {"id": 1, "sku": "J-32", "attributes": [
            {"name": "size", "value": "32"},
            {"name": "color", "value": {"key": "blue", "label": {"en": "Blue", "de": "Blau"}}},
            {"name": "material", "value": {"en": "Cotton", "de": "Baumwolle"}},
            {"name": "season", "value": {"key": "ss26", "label": "Spring/Summer 26"}},
            {"name": "tags", "value": [{"key": "a", "label": {"en": "Organic"}},
                                       {"key": "b", "label": {"en": "Vegan"}}]},
            {"name": "designer", "value": "Ann Demeulemeester"},
            {"name": "brand", "value": {"key": "acme", "label": "ACME"}},
        ]},
        "price": {"value": eur(5000)}, "quantity": 1, "totalPrice": eur(5000),
    }
    doc.update(overrides)
    return doc


def order_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "o-1", "customerId": "c-1", "customerEmail": "a@example.org",
        "createdAt": "2026-03-01T10:00:00.000Z", "lastModifiedAt": "2026-03-02T10:00:00.000Z",
        "orderState": "Open", "totalPrice": eur(5000), "lineItems": [line()],
    }
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def order(**overrides: Any) -> Order:
    return Order.model_validate(order_doc(**overrides))


def item(config: OrderMappingConfig = OrderMappingConfig(), lookup: Any = None,
         **line_overrides: Any) -> dict[str, Any]:
    o = order(lineItems=[line(**line_overrides)])
    return line_item_properties(o.line_items[0], lookup or {}, config)


# ---- attribute display values ------------------------------------------------------------------


@pytest.mark.parametrize(("value", "locale", "shown"), [
    ("32", None, "32"),                                                  # text
    ("", None, None),                                                    # empty text
    ({"en": "Cotton", "de": "Baumwolle"}, "de", "Baumwolle"),            # ltext
    ({"en": "Cotton", "de": "Baumwolle"}, None, "Cotton"),               # ltext, first
    ({"en": "Cotton", "de": "Baumwolle"}, "de-AT", "Baumwolle"),         # language of locale
    ({"key": "blue", "label": "Blue"}, None, "Blue"),                    # enum
    ({"key": "blue", "label": ""}, None, "blue"),                        # enum without label
    ({"key": "blue", "label": {"en": "Blue", "de": "Blau"}}, "de", "Blau"),  # lenum
    ({"key": "blue", "label": {}}, "de", "blue"),                        # lenum without labels
    (42, None, 42),
    (2.5, None, 2.5),
    (True, None, True),
    (False, None, False),
    (0, None, 0),
    (eur(1999), None, "19.99 EUR"),                                      # money
    (eur(5, 0), None, "5 EUR"),
    ({"type": "centPrecision", "currencyCode": "JPY", "centAmount": 500}, None, "5.00 JPY"),
    ({"centAmount": "x", "currencyCode": "EUR"}, None, None),
    ({"centAmount": 100}, None, None),
    ({"centAmount": True, "currencyCode": "EUR"}, None, None),
    ({"centAmount": 150, "currencyCode": "EUR", "fractionDigits": True}, None, "1.50 EUR"),
    ({"typeId": "product", "id": "p-9"}, None, "p-9"),                   # reference
    ({"typeId": "product", "id": ""}, None, None),
    ({"typeId": "product"}, None, None),                                 # reference without id
    ({"id": "x"}, None, "x"),                                            # a localized "id" text
    ({"centAmount": 150, "currencyCode": "EUR", "fractionDigits": 0}, None, "150 EUR"),
    (["S", "M", "L"], None, "S, M, L"),                                  # set of text
    ([{"key": "a", "label": {"en": "Organic", "de": "Bio"}}, {"key": "b", "label": "Vegan"}],
     "de", "Bio, Vegan"),                                                # set of (l)enum
    ([True, False], None, "true, false"),                                # set of boolean
    ([1, 2], None, "1, 2"),
    ([], None, None),
    (["", None], None, None),
    ([[{"name": "x", "value": 1}]], None, None),                         # nested: no flat form
    ({"x": 1}, None, None),                                              # unknown object
    ({}, None, None),
    (None, None, None),
    ("2026-03-01", None, "2026-03-01"),                                  # date
])
def test_display_value(value: Any, locale: str | None, shown: Any) -> None:
    assert display_value(value, locale) == shown
    assert type(display_value(value, locale)) is type(shown)


def test_attribute_values_include_exclude_and_shapes() -> None:
    raw = [{"name": "size", "value": "32"}, {"name": "color", "value": "Blue"},
           {"name": "empty", "value": ""}, {"name": "", "value": "x"}, {"value": "y"},
           {"name": "size", "value": "34"}]  # a repeated name: the first counts
    assert attribute_values(raw) == {"size": "32", "color": "Blue"}
    assert attribute_values(raw, include=["color"]) == {"color": "Blue"}
    assert attribute_values(raw, exclude=["color"]) == {"size": "32"}
    assert attribute_values(raw, include=["size", "color"], exclude=["size"]) == {
        "color": "Blue"}
    variant = Order.model_validate(order_doc()).line_items[0].variant
    assert variant is not None
    models = variant.attributes
    assert attribute_values(models, "de")["material"] == "Baumwolle"


# ---- Items[] / Ordered Product ------------------------------------------------------------------


ALL_ATTRIBUTES = {"size": "32", "color": "Blue", "material": "Cotton",
                  "season": "Spring/Summer 26", "tags": "Organic, Vegan",
                  "designer": "Ann Demeulemeester", "brand": "ACME"}


@pytest.mark.parametrize(("config", "attributes"), [
    (OrderMappingConfig(), ALL_ATTRIBUTES),
    (OrderMappingConfig(item_attributes_include=("size", "color")), {"size": "32",
                                                                     "color": "Blue"}),
    (OrderMappingConfig(item_attributes_exclude=("designer", "brand", "tags", "season")),
     {"size": "32", "color": "Blue", "material": "Cotton"}),
    (OrderMappingConfig(locale="de", item_attributes_include=("color", "material")),
     {"color": "Blau", "material": "Baumwolle"}),
    (OrderMappingConfig(item_attributes_include=("nothing",)), None),
])
def test_item_attributes(config: OrderMappingConfig, attributes: dict[str, Any] | None) -> None:
    assert item(config).get("Attributes") == attributes


def test_attributes_on_ordered_product_and_items() -> None:
    events = placed_order_events(order(), {}, OrderMappingConfig())
    placed, ordered = events
    assert placed.properties["Items"][0]["Attributes"] == ALL_ATTRIBUTES
    assert ordered.properties["Attributes"] == ALL_ATTRIBUTES


def test_variant_without_attributes_has_no_attributes_key() -> None:
    assert "Attributes" not in item(variant={"id": 1, "sku": "J"})
    assert "Attributes" not in item(variant=None)


@pytest.mark.parametrize(("brand_attribute", "product_attributes", "brand"), [
    (None, (), None),
    ("brand", (), "ACME"),                                   # the variant's (an enum label)
    ("designer", (), "Ann Demeulemeester"),
    ("label", ({"name": "label", "value": {"en": "House", "de": "Haus"}},), "House"),
    ("label", ({"name": "other", "value": "x"},), None),
    ("brand", ({"name": "brand", "value": "Product-level"},), "ACME"),  # variant wins
    ("missing", (), None),
])
def test_brand(brand_attribute: str | None, product_attributes: tuple[Any, ...],
               brand: str | None) -> None:
    config = OrderMappingConfig(brand_attribute=brand_attribute)
    lookup = {"prod-1": ProductInfo(attributes=product_attributes)}
    assert item(config, lookup).get("Brand") == brand


def test_brand_from_product_when_variant_value_is_empty() -> None:
    config = OrderMappingConfig(brand_attribute="brand")
    lookup = {"prod-1": ProductInfo(attributes=({"name": "brand", "value": "P"},))}
    variant = {"id": 1, "sku": "J", "attributes": [{"name": "brand", "value": ""}]}
    assert item(config, lookup, variant=variant)["Brand"] == "P"
    number = {"id": 1, "sku": "J", "attributes": [{"name": "brand", "value": 7}]}
    assert item(config, lookup, variant=number)["Brand"] == "7"
    assert item_brand(order().line_items[0], ProductInfo(), config, None) == "ACME"


def test_brands_on_order_level_events_once_each_in_item_order() -> None:
    other = line(id="li-2", productId="prod-2",
                 variant={"id": 1, "sku": "X", "attributes": [{"name": "brand", "value": "Zed"}]})
    same = line(id="li-3")
    config = OrderMappingConfig(brand_attribute="brand")
    o = order(lineItems=[line(), other, same])
    assert order_properties(o, {}, config)["Brands"] == ["ACME", "Zed"]
    assert "Brands" not in order_properties(o, {}, OrderMappingConfig())


def test_product_level_attributes_reach_the_lookup() -> None:
    product = {"id": "prod-1", "masterData": {"current": {
        "slug": {"en": "s"}, "attributes": [{"name": "brand", "value": "P"}]}}}
    assert product_lookup([product])["prod-1"].attributes == ({"name": "brand", "value": "P"},)


# ---- one locale per line item --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "slug", "locale", "expected"), [
    # PREFERRED_LOCALE unset: the name's first locale decides the slug's (the reference could
    # send a German name with an English slug).
    ({"de": "Hose", "en": "Pants"}, {"en": "pants", "de": "hose"}, None, ("Hose", "hose")),
    ({"en": "Pants", "de": "Hose"}, {"de": "hose", "en": "pants"}, None, ("Pants", "pants")),
    ({"en": "Pants", "de": "Hose"}, {"de": "hose", "en": "pants"}, "de", ("Hose", "hose")),
    ({"en": "Pants", "de": "Hose"}, {"de": "hose", "en": "pants"}, "de-CH", ("Hose", "hose")),
    # A locale the name lacks: the name's first; the slug follows it.
    ({"fr": "Pantalon", "en": "Pants"}, {"en": "pants", "fr": "pantalon"}, "de",
     ("Pantalon", "pantalon")),
    # A slug without the name's locale: its own first value rather than none.
    ({"de": "Hose"}, {"en": "pants"}, None, ("Hose", "pants")),
])
def test_name_and_slug_in_one_locale(name: dict[str, str], slug: dict[str, str],
                                     locale: str | None, expected: tuple[str, str]) -> None:
    config = OrderMappingConfig(locale=locale, product_url_template="https://s/{slug}")
    entry = item(config, name=name, productSlug=slug)
    assert (entry["ProductName"], entry["ProductURL"]) == (expected[0], f"https://s/{expected[1]}")


def test_slug_from_the_product_in_the_line_items_locale() -> None:
    config = OrderMappingConfig(product_url_template="https://s/{slug}")
    lookup = {"prod-1": ProductInfo(slug="english", slugs={"en": "english", "de": "deutsch"})}
    entry = item(config, lookup, name={"de": "Hose"}, productSlug=None)
    assert entry["ProductURL"] == "https://s/deutsch"
    # Only the old single slug known (a lookup built elsewhere): it is used.
    entry = item(config, {"prod-1": ProductInfo(slug="only")}, name={"de": "Hose"},
                 productSlug=None)
    assert entry["ProductURL"] == "https://s/only"


@pytest.mark.parametrize(("text", "locale", "chosen"), [
    (None, None, None),
    (None, "de", "de"),
    ({}, "de", "de"),
    ({"en": "", "de": "x"}, None, "de"),
    ({"en": "a", "de": "b"}, "de", "de"),
    ({"en": "a", "de-DE": "b"}, "de_DE", "de-DE"),
    ({"en": "a", "de": "b"}, "de-AT", "de"),
    ({"en": "a"}, "fr", "en"),
    ({"en": ""}, "fr", "fr"),
    ({"en": "a"}, "not a locale!", "en"),
])
def test_resource_locale(text: Any, locale: str | None, chosen: str | None) -> None:
    assert resource_locale(text, locale) == chosen


# ---- addresses, tax ------------------------------------------------------------------------------


def address(**fields: Any) -> Address:
    return Address.model_validate(fields)


@pytest.mark.parametrize(("fields", "mapped"), [
    ({}, None),
    ({"country": "US", "state": "NY", "city": "New York"},
     {"CountryCode": "US", "Region": "NY", "City": "New York"}),
    ({"country": "us", "state": "NY"}, {"CountryCode": "us", "Region": "NY"}),
    ({"country": "US", "state": "NY", "region": "New York State"},
     {"CountryCode": "US", "Region": "New York State"}),               # region wins
    ({"country": "DE", "state": "Bayern"}, {"CountryCode": "DE"}),    # only US states
    ({"state": "NY"}, None),
    ({"firstName": "Ann", "lastName": "Lee", "company": "ACME", "apartment": "4B",
      "building": "Tower", "streetNumber": "1", "streetName": "Main St",
      "additionalStreetInfo": "rear", "additionalAddressInfo": "ring twice",
      "postalCode": "10001", "phone": "+12125550100", "mobile": "+12125550199"},
     {"FirstName": "Ann", "LastName": "Lee", "Company": "ACME",
      "Address1": "4B, Tower, 1, Main St", "Address2": "rear, ring twice", "Zip": "10001",
      "Phone": "+12125550100"}),
    ({"mobile": "+12125550199"}, {"Phone": "+12125550199"}),
    ({"firstName": ""}, None),
])
def test_order_address(fields: dict[str, Any], mapped: dict[str, Any] | None) -> None:
    assert order_address(address(**fields)) == mapped


def test_no_address_no_key() -> None:
    assert order_address(None) is None
    properties = order_properties(order(), {}, OrderMappingConfig())
    assert "BillingAddress" not in properties and "ShippingAddress" not in properties


def test_us_state_on_the_placed_order_profile_and_addresses() -> None:
    us = {"country": "US", "state": "CA", "city": "LA"}
    # A guest order: only then does Placed Order carry a location (a registered customer's
    # profile keeps the location the customer processor sends, issue 14 §2).
    placed = placed_order_events(order(customerId=None, customerEmail="guest@example.com",
                                       billingAddress=us, shippingAddress={**us, "state": "NV"}),
                                 {}, OrderMappingConfig())[0]
    assert placed.profile["location"] == {"country": "US", "region": "CA", "city": "LA"}
    assert placed.properties["BillingAddress"]["Region"] == "CA"
    assert placed.properties["ShippingAddress"]["Region"] == "NV"


@pytest.mark.parametrize(("taxed", "tax"), [
    (None, None),
    ({"totalNet": eur(1000), "totalGross": eur(1190), "totalTax": eur(190)}, 1.9),
    ({"totalNet": eur(1000), "totalGross": eur(1190)}, 1.9),      # no totalTax: the split
    ({"totalNet": eur(1000), "totalGross": eur(1000), "totalTax": eur(0)}, 0.0),
    ({"totalNet": eur(1000)}, None),
    ({"totalGross": eur(1000)}, None),
    ({"totalTax": eur(12345, 3)}, 12.345),
])
def test_total_tax(taxed: dict[str, Any] | None, tax: float | None) -> None:
    o = order(taxedPrice=taxed)
    assert total_tax(o) == tax
    properties = order_properties(o, {}, OrderMappingConfig())
    assert properties.get("TotalTax") == tax


# ---- Placed Order by state -----------------------------------------------------------------------


REFUNDED = Payment.model_validate({"id": "pay", "transactions": [
    {"id": "t-r", "type": "Refund", "state": "Success", "amount": eur(100)}]})


@pytest.mark.parametrize(("states", "order_state", "placed"), [
    ((), "Open", True),
    ((), None, True),
    (("Confirmed",), "Open", False),
    (("Confirmed",), "Confirmed", True),
    (("Confirmed", "Complete"), "Complete", True),
    (("Confirmed",), None, False),
])
def test_placed_order_states(states: tuple[str, ...], order_state: str | None,
                             placed: bool) -> None:
    config = OrderMappingConfig(placed_order_states=states)
    o = order(orderState=order_state)
    assert placed_order_wanted(o, config) is placed
    events = placed_order_events(o, {}, config)
    assert [e.metric for e in events] == (["Placed Order", "Ordered Product"] if placed else [])
    # The other events do not depend on it.
    metrics = [e.metric for e in order_events(o, [REFUNDED], {}, config)]
    assert metrics.count("Refunded Order") == 1
    assert ("Placed Order" in metrics) is placed


def test_cancelled_order_still_sent_when_placed_order_is_not() -> None:
    config = OrderMappingConfig(placed_order_states=("Complete",))
    events = order_events(order(orderState="Cancelled"), [], {}, config)
    assert [(e.metric, e.unique_id) for e in events] == [("Cancelled Order", "o-1:cancelled")]


# ---- settings → mapping --------------------------------------------------------------------------


def test_new_settings_reach_the_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**BASE_ENV, "ORDER_ITEM_ATTRIBUTES_INCLUDE": "size, color",
           "ORDER_ITEM_ATTRIBUTES_EXCLUDE": "color", "ORDER_BRAND_ATTRIBUTE": " brand ",
           "PLACED_ORDER_STATES": "Confirmed,Complete", "METRIC_PLACED_ORDER": "Order Placed",
           "METRIC_ORDERED_PRODUCT": "Product Ordered", "METRIC_REFUNDED_ORDER": "Refund",
           "METRIC_CANCELLED_ORDER": "Order Cancelled",
           "ORDER_PROPERTIES_EXCLUDE": "custom.secret"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = OrderMappingConfig.from_settings(load_settings())
    assert config.item_attributes_include == ("size", "color")
    assert config.item_attributes_exclude == ("color",)
    assert config.brand_attribute == "brand"
    assert config.placed_order_states == ("Confirmed", "Complete")
    assert config.properties_exclude == ("custom.secret",)
    assert config.order_state_metrics["Cancelled"] == "Order Cancelled"
    o = order(orderState="Confirmed")
    events = order_events(o, [REFUNDED], {}, config)
    assert [e.metric for e in events] == ["Order Placed", "Product Ordered", "Fulfilled Order",
                                          "Refund"]
    assert events[1].properties["Attributes"] == {"size": "32"}
    assert events[1].properties["Brand"] == "ACME"
    assert events[0].unique_id == "o-1:placed"
    assert [e.metric for e in order_events(order(orderState="Cancelled"), [], {}, config)] == [
        "Order Cancelled"]

    monkeypatch.setenv("ORDER_BRAND_ATTRIBUTE", "  ")
    monkeypatch.setenv("PLACED_ORDER_STATES", "")
    config = OrderMappingConfig.from_settings(load_settings())
    assert (config.brand_attribute, config.placed_order_states) == (None, ())


def test_excluded_raw_field_and_custom_field_renames(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**BASE_ENV, "ORDER_PROPERTIES_INCLUDE": "custom.*, orderNumber",
                        "ORDER_PROPERTIES_EXCLUDE": "custom.secret",
                        "ORDER_PROPERTIES_RENAME": '{"custom.note": "Note"}'}.items():
        monkeypatch.setenv(name, value)
    config = OrderMappingConfig.from_settings(load_settings())
    o = order(orderNumber="N-1", custom={"type": {"typeId": "type", "id": "t"},
                                         "fields": {"note": "hi", "secret": "x", "n": 0}})
    properties = order_properties(o, {}, config)
    assert properties["Note"] == "hi" and properties["n"] == 0
    assert properties["orderNumber"] == "N-1"
    assert "secret" not in properties and "custom.secret" not in properties


# ---- exact limits --------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [MAX_PROPERTIES - 1, MAX_PROPERTIES, MAX_PROPERTIES + 1])
def test_property_count_at_the_limit(extra: int) -> None:
    properties = {"OrderId": "o"} | {f"p{i:03d}": i for i in range(extra)}
    limited, cut = limit_properties(properties)
    total = 1 + extra
    assert len(limited) == min(total, MAX_PROPERTIES)
    assert cut == max(0, total - MAX_PROPERTIES)
    assert list(limited)[0] == "OrderId"


@pytest.mark.parametrize("count", [MAX_ARRAY_ITEMS, MAX_ARRAY_ITEMS + 1])
def test_array_length_at_the_limit(count: int) -> None:
    limited, cut = limit_properties({"Items": [{"SKU": str(i)} for i in range(count)]})
    assert len(limited["Items"]) == MAX_ARRAY_ITEMS
    assert cut == count - MAX_ARRAY_ITEMS
    assert limited["Items"][-1] == {"SKU": str(MAX_ARRAY_ITEMS - 1)}


@pytest.mark.parametrize(("size", "kept"), [
    (MAX_STRING_BYTES - 1, MAX_STRING_BYTES - 1),
    (MAX_STRING_BYTES, MAX_STRING_BYTES),
    (MAX_STRING_BYTES + 1, MAX_STRING_BYTES),
])
def test_string_bytes_at_the_limit(size: int, kept: int) -> None:
    limited, cut = limit_properties({"Note": "x" * size, "Items": [{"N": "y" * size}]})
    assert len(limited["Note"]) == kept and len(limited["Items"][0]["N"]) == kept
    assert cut == (2 if size > MAX_STRING_BYTES else 0)


def test_multibyte_string_cut_at_a_character_boundary() -> None:
    text = "é" * (MAX_STRING_BYTES // 2 + 1)  # 2 bytes each: one character too many
    limited, cut = limit_properties({"Note": text})
    assert cut == 1
    assert limited["Note"] == "é" * (MAX_STRING_BYTES // 2)


# ---- rare shapes ---------------------------------------------------------------------------------


def test_discounted_custom_line_item() -> None:
    o = order(customLineItems=[{
        "id": "cli", "name": {"en": "Service"}, "slug": "svc", "money": eur(1000),
        "totalPrice": eur(1400), "quantity": 2,
        "discountedPricePerQuantity": [{"quantity": 2, "discountedPrice": {
            "value": eur(700), "includedDiscounts": [
                {"discount": {"typeId": "cart-discount", "id": "d"},
                 "discountedAmount": eur(300)}]}}],
    }])
    entry = custom_line_item_properties(o.custom_line_items[0], OrderMappingConfig())
    assert entry == {"ProductName": "Service", "Quantity": 2, "ItemPrice": 10.0,
                     "RowTotal": 14.0, "DiscountValue": 6.0}
    assert order_properties(o, {}, OrderMappingConfig())["DiscountValue"] == 6.0


def test_names_only_in_another_locale() -> None:
    o = order(lineItems=[line(name={"ja": "ジーンズ"}, productSlug={"ja": "jiinzu"})])
    config = OrderMappingConfig(locale="en", product_url_template="https://s/{slug}")
    properties = order_properties(o, {}, config)
    assert properties["ItemNames"] == ["ジーンズ"]
    assert properties["Items"][0]["ProductURL"] == "https://s/jiinzu"


def test_duplicate_skus_are_separate_items_and_events() -> None:
    o = order(lineItems=[line(), line(id="li-2", quantity=3, totalPrice=eur(15000))])
    events = placed_order_events(o, {}, OrderMappingConfig())
    assert [(e.metric, e.unique_id) for e in events] == [
        ("Placed Order", "o-1:placed"), ("Ordered Product", "li-1"),
        ("Ordered Product", "li-2")]
    assert [i["SKU"] for i in events[0].properties["Items"]] == ["J-32", "J-32"]
    assert events[0].properties["ItemNames"] == ["Jeans"]


def test_several_unreadable_documents_lose_only_their_enrichment() -> None:
    products: list[dict[str, Any]] = [
                {"id": "prod-1", "masterData": {"current": {"slug": {"en": "ok"}}}},
                {"masterData": {}}, {"id": "bad", "masterData": {"current": {"slug": 5}}},
                {"id": 3}]
    categories: list[dict[str, Any]] = [{"id": "c", "name": 1}, {"name": {"en": "no id"}},
                                        {"id": "c2"}]
    lookup = product_lookup(products, categories)
    assert list(lookup) == ["prod-1"]
    o = order(lineItems=[line(), line(id="li-2", productId="bad")])
    assert len(placed_order_events(o, lookup, OrderMappingConfig())) == 3


def test_orders_deep_copied_fixture_is_not_mutated() -> None:
    doc = order_doc()
    before = copy.deepcopy(doc)
    order_events(Order.model_validate(doc), [], {}, OrderMappingConfig(brand_attribute="brand"))
    assert doc == before


# ---- pinned by mutation testing: logs, lookups, shapes -------------------------------------------


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, Any]]]:
    keys = ("ctCategoryId", "ctProductId", "ctOrderId", "metric", "uniqueId", "cutCount")
    return [(r.getMessage(), {k: getattr(r, k) for k in keys if hasattr(r, k)})
            for r in caplog.records if r.levelname == "WARNING"]


def test_unreadable_documents_are_logged_by_id_and_the_rest_still_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    categories: list[dict[str, Any]] = [{"id": "bad-cat", "name": 5},
                                        {"id": "c-ok", "name": {"en": "Ok"}}]
    products: list[dict[str, Any]] = [{"id": "bad-prod", "masterData": {"current": {"slug": 5}}},
                {"id": "p-ok", "masterData": {"current": {
                    "slug": {"en": "s"}, "categories": [{"typeId": "category", "id": "c-ok"}]}}}]
    lookup = product_lookup(products, categories)
    assert warnings_of(caplog) == [
        ("category document unreadable; left out of Categories", {"ctCategoryId": "bad-cat"}),
        ("product document unreadable; order items lack its categories",
         {"ctProductId": "bad-prod"}),
    ]
    # Documents after an unreadable one are still read.
    assert lookup["p-ok"].categories == ("Ok",)


def test_ancestor_names_learnt_from_another_categorys_expansion() -> None:
    women = {"id": "c-women", "name": {"en": "Women", "de": "Damen"}}
    expanded = {"id": "c-pants", "name": {"en": "Pants"},
                "ancestors": [{"typeId": "category", "id": "c-women", "obj": women}]}
    bare = {"id": "c-skirts", "name": {"en": "Skirts"},
            "ancestors": [{"typeId": "category", "id": "c-women"}]}  # not expanded here
    product = {"id": "p", "masterData": {"current": {"slug": {"en": "s", "de": "s-de"},
                                                     "categories": [
                                                         {"typeId": "category", "id": "c-skirts"},
                                                         {"typeId": "category", "id": "gone"}]}}}
    lookup = product_lookup([product], [expanded, bare], locale="de")
    assert lookup["p"].categories == ("Damen", "Damen > Skirts")
    assert lookup["p"].slug == "s-de"


def test_categories_from_the_products_expanded_references() -> None:
    women = {"id": "c-women", "name": {"en": "Women"}}
    pants = {"id": "c-pants", "name": {"en": "Pants"},
             "ancestors": [{"typeId": "category", "id": "c-women", "obj": women}]}
    broken = {"id": "c-broken", "name": 7}
    product = {"id": "p", "masterData": {"current": {"slug": {"en": "s"}, "categories": [
        {"typeId": "category", "id": "c-broken", "obj": broken},
        {"typeId": "category", "id": "c-pants", "obj": pants}]}}}
    # One query's worth: the categories come inside the products (no categories argument).
    assert product_lookup([product])["p"].categories == ("Women", "Women > Pants")


def test_cut_properties_are_logged_per_event(caplog: pytest.LogCaptureFixture) -> None:
    big = {"id": "li-1", "productId": "prod-1", "name": {"en": "x" * (MAX_STRING_BYTES + 10)},
           "variant": {"id": 1, "sku": "S"}, "quantity": 1}
    events = placed_order_events(order(lineItems=[big]), {}, OrderMappingConfig())
    assert len(events[0].properties["ItemNames"][0].encode()) == MAX_STRING_BYTES
    assert warnings_of(caplog) == [
        ("order event properties cut to Klaviyo's limits",
         {"ctOrderId": "o-1", "metric": "Placed Order", "uniqueId": "o-1:placed",
          "cutCount": 2}),  # ItemNames and Items[0].ProductName
        ("order event properties cut to Klaviyo's limits",
         {"ctOrderId": "o-1", "metric": "Ordered Product", "uniqueId": "li-1", "cutCount": 1}),
    ]


def test_a_clean_event_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    placed_order_events(order(), {}, OrderMappingConfig())
    assert warnings_of(caplog) == []


@pytest.mark.parametrize(("shipment", "metrics"), [
    ("Shipped", ["Fulfilled Order"]),
    ("Delivered", ["Fulfilled Order"]),
    ("Pending", []),
])
def test_order_events_follow_the_shipment_state(shipment: str, metrics: list[str]) -> None:
    events = order_events(order(orderState="Open", shipmentState=shipment), [], {},
                          OrderMappingConfig())
    assert [e.metric for e in events[2:]] == metrics


def test_custom_line_item_without_money_and_in_the_preferred_locale() -> None:
    o = order(customLineItems=[{"id": "c", "name": {"en": "Wrap", "de": "Verpackung"},
                                "quantity": 1}])
    entry = custom_line_item_properties(o.custom_line_items[0], OrderMappingConfig(locale="de"))
    assert entry == {"ProductName": "Verpackung", "Quantity": 1}


def test_order_events_use_the_lookup_for_every_event() -> None:
    lookup = {"prod-1": ProductInfo(categories=("Women",))}
    o = order(orderState="Complete")
    events = order_events(o, [REFUNDED], lookup, OrderMappingConfig())
    for event in events:
        if event.metric != "Ordered Product":
            assert event.properties["Categories"] == ["Women"], event.metric
            assert event.properties["Items"][0]["Categories"] == ["Women"]
    assert events[1].properties["Categories"] == ["Women"]


# ---- Klaviyo limits: exact cut counts and each fallback of the size budget ---------------------


def test_cut_count_per_kind_of_cut() -> None:
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH):
        deep = {"d": deep}
    properties = {"OrderId": "o", "Long": "x" * (MAX_STRING_BYTES + 1),
                  "List": list(range(MAX_ARRAY_ITEMS + 3)), "Deep": deep,
                  "DeepList": [[[[[[[[[[["x"]]]]]]]]]]], "Keep": [None, {"a": None}]}
    limited, cut = limit_properties(properties)
    # 1 string + 3 array entries + 1 dict too deep + 1 list too deep
    assert cut == 6
    assert limited["Keep"] == [None, {"a": None}]  # None values are kept, not cut
    assert len(limited["List"]) == MAX_ARRAY_ITEMS


def test_a_string_exactly_a_quarter_of_the_limit_is_not_cut() -> None:
    text = "é" * (MAX_STRING_BYTES // 4)  # the "short string" fast path's edge
    assert limit_properties({"T": text}) == ({"T": text}, 0)
    long = "é" * (MAX_STRING_BYTES // 2)  # 2 bytes a character: exactly the limit
    assert limit_properties({"T": long}) == ({"T": long}, 0)


def _many_short_strings(items: int, keys: int) -> list[dict[str, Any]]:
    # Short strings, numbers and nested lists only: the size must be tracked through the fast
    # paths (no string near the per-string limit).
    return [{f"k{j:02d}": f"{i:05d}-{j:02d}-" + "v" * 40 for j in range(keys)} | {
        "n": i, "f": 1.5, "b": True, "z": None, "l": ["a" * 30, 7, None, [1, 2]]}
            for i in range(items)]


def test_total_size_of_many_small_values_is_enforced() -> None:
    items = _many_short_strings(3000, 30)
    assert _size({"Items": items}) > MAX_PROPERTIES_BYTES
    limited, cut = limit_properties({"OrderId": "o", "Items": items})
    assert _size(limited) <= MAX_PROPERTIES_BYTES
    kept = len(limited["Items"])
    assert kept == 3000 * 3 // 4  # shortened once by a quarter: then it fits
    assert cut == 3000 - kept
    assert limited["Items"] == items[:kept]


def test_raw_fields_go_first_one_at_a_time_from_the_end() -> None:
    chunk = "x" * (MAX_STRING_BYTES - 10)
    raw = {f"raw{i:02d}": chunk for i in range(45)}  # ~4.6 MB of raw fields
    limited, cut = limit_properties({"OrderId": "o", "Items": [{"SKU": "s"}], **raw})
    assert _size(limited) <= MAX_PROPERTIES_BYTES
    kept = [k for k in limited if k.startswith("raw")]
    assert kept == [f"raw{i:02d}" for i in range(len(kept))]  # the first ones stay
    assert cut == 45 - len(kept)
    assert limited["Items"] == [{"SKU": "s"}]
    assert _size(limited) > MAX_PROPERTIES_BYTES - len(chunk) - 20  # not one more dropped


def test_generated_properties_are_dropped_last_and_order_id_never() -> None:
    chunk = "x" * (MAX_STRING_BYTES - 10)
    # Only Klaviyo-structure keys (no raw field to drop first) and no Items[] to shorten.
    properties = {"OrderId": "o", "OrderNumber": chunk, "ItemNames": [chunk] * 25,
                  "Categories": [chunk] * 25, "Items": []}
    limited, cut = limit_properties(properties)
    assert _size(limited) <= MAX_PROPERTIES_BYTES
    # The last ones go first, one at a time: Items (empty), then Categories.
    assert list(limited) == ["OrderId", "OrderNumber", "ItemNames"] and cut == 2


def test_nothing_but_order_id_left_ends_the_loop() -> None:
    limited, cut = limit_properties({"OrderId": "x" * MAX_STRING_BYTES})
    assert cut == 0 and len(limited["OrderId"]) == MAX_STRING_BYTES
