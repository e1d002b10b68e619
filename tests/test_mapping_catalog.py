"""Table tests of the catalog mappings: categories, items, variants, prices, stock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.commercetools.models.category import Category
from shared.commercetools.models.inventory import InventoryEntry
from shared.commercetools.models.product import Price, Product, ProductVariantAvailability
from shared.mapping.catalog import (
    CatalogConfig,
    item_attributes,
    product_url,
    split_variants,
    variant_attributes,
)
from shared.mapping.catalog_categories import category_attributes, category_ids, category_name
from shared.mapping.catalog_metadata import localized_json, price_metadata
from shared.mapping.catalog_prices import price_value, select_price
from shared.mapping.catalog_stock import availability_quantity, inventory_quantity
from shared.mapping.currency_countries import COUNTRIES_BY_CURRENCY, countries_using
from shared.setting_syntax import check_url_template

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
EUR_COUNTRIES = COUNTRIES_BY_CURRENCY["EUR"]


def money(cents: int, currency: str = "EUR", digits: int = 2) -> dict[str, Any]:
    return {"type": "centPrecision", "currencyCode": currency, "centAmount": cents,
            "fractionDigits": digits}


def price(cents: int, currency: str = "EUR", **extra: Any) -> dict[str, Any]:
    return {"value": money(cents, currency), **extra}


def prices(*docs: dict[str, Any]) -> list[Price]:
    return [Price.model_validate(d) for d in docs]


def ref(type_id: str, id_: str, obj: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"typeId": type_id, "id": id_, **({"obj": obj} if obj is not None else {})}


# -- categories ------------------------------------------------------------------------------------

WOMEN = {"id": "c-women", "name": {"en": "Women", "de": "Damen"}, "ancestors": []}
PANTS = {"id": "c-pants", "name": {"en": "Pants", "de": "Hosen"},
         "ancestors": [ref("category", "c-women")]}


def category(name: dict[str, str], *ancestors: dict[str, Any], **extra: Any) -> Category:
    return Category.model_validate({
        "id": "c-jeans", "name": name, "slug": {"en": "jeans"},
        "ancestors": [ref("category", a["id"], a) for a in ancestors], **extra,
    })


@pytest.mark.parametrize(
    ("cat", "locale", "expected"),
    [
        (category({"en": "Jeans"}), None, "Jeans"),  # a root category: its own name
        (category({"en": "Jeans", "de": "Jeans"}, WOMEN, PANTS), "de", "Damen > Hosen > Jeans"),
        (category({"en": "Jeans"}, WOMEN, PANTS), "en-GB", "Women > Pants > Jeans"),  # language
        (category({"en": "Jeans"}, WOMEN, PANTS), "fr", "Women > Pants > Jeans"),  # first locale
        (category({"en": "", "de": "Jeans"}, WOMEN), "en", "Women > Jeans"),  # empty → next
        (category({}, WOMEN, key="jeans-key"), "en", "Women > jeans-key"),  # no name → key
        (category({}, WOMEN), None, "Women > c-jeans"),  # … then id
        # An ancestor not expanded (deleted meanwhile) is left out, not shown as an id.
        (Category.model_validate({"id": "c-x", "name": {"en": "X"},
                                  "ancestors": [ref("category", "gone"),
                                                ref("category", "c-women", WOMEN)]}),
         "en", "Women > X"),
    ],
)
def test_category_breadcrumb(cat: Category, locale: str | None, expected: str) -> None:
    assert category_name(cat, locale) == expected
    assert category_attributes(cat, locale) == {"external_id": cat.id, "name": expected}


# -- URL template ----------------------------------------------------------------------------------


def product(**overrides: Any) -> Product:
    master = {
        "id": 1, "sku": "SKU-1",
        "prices": [price(1999), price(2599, "USD")],
        "images": [{"url": "https://img/1.jpg", "dimensions": {"w": 1, "h": 1}},
                   {"url": "https://img/2.jpg", "dimensions": {"w": 1, "h": 1}}],
        "availability": {"isOnStock": True, "availableQuantity": 7},
    }
    current: dict[str, Any] = {
        "name": {"en": "Blue Jeans", "de": "Blaue Jeans"},
        "description": {"en": "Denim", "de": "Jeansstoff"},
        "slug": {"en": "blue-jeans", "de": "blaue-jeans"},
        "categories": [ref("category", "c-jeans", {"id": "c-jeans", "ancestors": [
            ref("category", "c-women"), ref("category", "c-pants")]})],
        "masterVariant": master,
        "variants": [
            {"id": 2, "sku": "SKU-2", "prices": [price(2099)], "images": [],
             "availability": {"availableQuantity": 0}},
            {"id": 3, "prices": [price(100)]},  # no SKU
        ],
    }
    current.update(overrides.pop("current", {}))
    doc = {"id": "p-1", "key": "jeans key", "version": 4,
           "masterData": {"published": True, "current": current, "staged": current,
                          "hasStagedChanges": False}}
    doc.update(overrides)
    return Product.model_validate(doc)


@pytest.mark.parametrize(
    ("template", "sku", "expected"),
    [
        (None, None, ""),
        ("https://shop.example/p/{slug}", None, "https://shop.example/p/blue-jeans"),
        ("https://shop.example/p/{{productSlug}}", None, "https://shop.example/p/blue-jeans"),
        ("https://shop.example/{id}/{key}?sku={sku}", None,
         "https://shop.example/p-1/jeans%20key?sku=SKU-1"),
        ("https://shop.example/{slug}?sku={sku}", "A/B 1",
         "https://shop.example/blue-jeans?sku=A%2FB%201"),
        ("https://shop.example/{{literal}}/{slug}", None,
         "https://shop.example/{literal}/blue-jeans"),
    ],
)
def test_product_url(template: str | None, sku: str | None, expected: str) -> None:
    assert product_url(product(), CatalogConfig(url_template=template), sku) == expected


def test_product_url_uses_preferred_locale_slug() -> None:
    config = CatalogConfig(locale="de-DE", url_template="https://s/{slug}")
    assert product_url(product(), config) == "https://s/blaue-jeans"


@pytest.mark.parametrize("template", ["https://s/{nope}", "https://s/{", "https://s/{slug:>5}",
                                      "https://s/{}", "https://s/{slug!r}"])
def test_bad_url_templates_are_rejected(template: str) -> None:
    with pytest.raises(ValueError):
        check_url_template(template)


# -- prices ----------------------------------------------------------------------------------------

EARLY = "2026-01-01T00:00:00.000Z"
MID = "2026-06-01T00:00:00.000Z"
LATE = "2026-12-31T00:00:00.000Z"
FUTURE = "2027-01-01T00:00:00.000Z"
PAST = "2025-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("docs", "currency", "expected"),
    [
        ([], None, 0.0),  # no prices → 0
        ([price(1000)], None, 10.0),  # one regular price
        ([price(1000), price(2000, "USD")], "USD", 20.0),  # currency filter
        ([price(1000)], "USD", 0.0),  # no price in the currency → 0
        ([price(1000), price(1100)], None, 10.0),  # first regular price in array order
        # An active ranged price wins over a regular one …
        ([price(1000), price(800, validFrom=EARLY, validUntil=LATE)], None, 8.0),
        # … open-ended on either side …
        ([price(1000), price(700, validUntil=LATE)], None, 7.0),
        ([price(1000), price(600, validFrom=EARLY)], None, 6.0),
        # … the earliest-started active one first, then the earliest-ending one.
        ([price(900, validFrom=MID), price(800, validFrom=EARLY, validUntil=LATE)], None, 8.0),
        ([price(900, validFrom=EARLY), price(800, validFrom=EARLY, validUntil=LATE)], None, 8.0),
        # Future and expired ranged prices never count.
        ([price(1000), price(500, validFrom=FUTURE)], None, 10.0),
        ([price(1000), price(500, validFrom=PAST, validUntil=PAST)], None, 10.0),
        ([price(500, validFrom=FUTURE)], None, 0.0),
        # Customer-group prices are never the public price, ranged or regular.
        ([price(500, customerGroup=ref("customer-group", "vip")), price(1000)], None, 10.0),
        ([price(1000), price(500, validFrom=EARLY, customerGroup=ref("customer-group", "vip"))],
         None, 10.0),
        # Channel- and country-specific prices count as regular (as in the reference).
        ([price(1200, country="DE", channel=ref("channel", "ch")), price(1000)], None, 12.0),
        # Ranged in another currency does not beat a regular one in the preferred currency.
        ([price(1000), price(1, "USD", validFrom=EARLY)], "EUR", 10.0),
        # Minor units are scaled by the currency's fraction digits.
        ([{"value": money(1234, "JPY", 0)}], "JPY", 1234.0),
        ([{"value": money(12345, "KWD", 3)}], None, 12.345),
    ],
)
def test_price_priority(docs: list[dict[str, Any]], currency: str | None, expected: float) -> None:
    assert price_value(prices(*docs), currency, now=NOW) == expected


def test_select_price_returns_the_price_with_its_country() -> None:
    chosen = select_price(prices(price(1000), price(900, country="AT", validFrom=EARLY)), now=NOW)
    assert chosen is not None and chosen.country == "AT"
    assert select_price([], now=NOW) is None


def _json(metadata: dict[str, str], key: str) -> dict[str, Any]:
    return json.loads(metadata[key])


def test_price_json_lists_every_country_of_the_currency() -> None:
    metadata = price_metadata(prices(price(1999), price(2500, "USD")), now=NOW)
    by_price, by_currency = _json(metadata, "price_json"), _json(metadata, "currency_json")
    assert list(by_price)[:2] == ["price_EUR", "price_AD"]  # insertion order, like the reference
    assert by_price["price_EUR"] == 19.99 and by_price["price_DE"] == 19.99
    assert by_price["price_USD"] == 25 and by_price["price_US"] == 25
    assert by_currency["currency_FR"] == "EUR" and by_currency["currency_EC"] == "USD"
    assert "currency_EUR" not in by_currency
    assert {k for k in by_price if k != "price_EUR" and by_price[k] == 19.99} == {
        f"price_{c}" for c in EUR_COUNTRIES}
    # Compact JSON with integers as integers (as JavaScript's JSON.stringify writes them).
    assert '"price_USD":25,' in metadata["price_json"] and ": " not in metadata["price_json"]


@pytest.mark.parametrize(
    ("docs", "expected_price", "expected_currency"),
    [
        ([], None, None),  # no prices → no price_json/currency_json at all
        # A price for one country: only that country's keys.
        ([price(1000, "CHF", country="LI")], {"price_CHF": 10, "price_LI": 10},
         {"currency_LI": "CHF"}),
        # A currency without a price active now is left out (not advertised at 0).
        ([price(1000, "CHF", country="CH"), price(5, "GBP", validFrom=FUTURE)],
         {"price_CHF": 10, "price_CH": 10}, {"currency_CH": "CHF"}),
        # A later currency overwrites an earlier one's keys for shared countries (Panama).
        ([price(100, "PAB"), price(200, "USD", country="PA")],
         {"price_PAB": 1, "price_PA": 2, "price_USD": 2}, {"currency_PA": "USD"}),
        # A currency used by no country: only its own key.
        ([price(4200, "XAU")], {"price_XAU": 42}, {}),
    ],
)
def test_price_and_currency_json(docs: list[dict[str, Any]], expected_price: Any,
                                 expected_currency: Any) -> None:
    metadata = price_metadata(prices(*docs), now=NOW)
    if expected_price is None:
        assert metadata == {}
    else:
        assert _json(metadata, "price_json") == expected_price
        assert _json(metadata, "currency_json") == expected_currency


def test_currency_table() -> None:
    assert countries_using("eur") == EUR_COUNTRIES
    assert {"DE", "FR", "HR", "BG", "AT"} <= set(EUR_COUNTRIES)
    assert "EU" not in EUR_COUNTRIES and "FX" not in EUR_COUNTRIES  # not countries
    assert countries_using("CHF") == ("CH", "LI") and countries_using("XXX") == ()


def test_localized_json() -> None:
    assert localized_json("title", {"en-US": "Jeans", "de": "Jeans \u00fc"}) == (
        '{"title_en-US":"Jeans","title_de":"Jeans \u00fc"}')
    assert localized_json("slug", None) == "{}"


# -- items -----------------------------------------------------------------------------------------


def test_item_attributes() -> None:
    config = CatalogConfig(locale="en", currency="USD", url_template="https://s/{slug}")
    attributes, relationships = item_attributes(product(), config, now=NOW)
    metadata = attributes.pop("custom_metadata")
    assert attributes == {
        "external_id": "p-1",
        "title": "Blue Jeans",
        "description": "Denim",
        "url": "https://s/blue-jeans",
        "price": 25.99,
        "published": True,
        "images": ["https://img/1.jpg", "https://img/2.jpg"],
        "image_full_url": "https://img/1.jpg",
    }
    assert metadata["title_json"] == '{"title_en":"Blue Jeans","title_de":"Blaue Jeans"}'
    assert metadata["slug_json"] == '{"slug_en":"blue-jeans","slug_de":"blaue-jeans"}'
    assert _json(metadata, "price_json")["price_USD"] == 25.99
    assert _json(metadata, "currency_json")["currency_DE"] == "EUR"
    assert relationships == {"categories": {"data": [
        {"type": "catalog-category", "id": "$custom:::$default:::c-jeans"},
        {"type": "catalog-category", "id": "$custom:::$default:::c-women"},
        {"type": "catalog-category", "id": "$custom:::$default:::c-pants"},
    ]}}


@pytest.mark.parametrize(
    ("current", "check"),
    [
        # No description: empty string (Klaviyo requires the attribute).
        ({"description": None}, lambda a, r: a["description"] == ""),
        # No images: none sent, and the list is emptied in Klaviyo.
        ({"masterVariant": {"id": 1, "sku": "S", "images": []}},
         lambda a, r: a["images"] == [] and "image_full_url" not in a),
        # No prices: price 0, no price_json/currency_json.
        ({"masterVariant": {"id": 1, "sku": "S"}},
         lambda a, r: a["price"] == 0 and set(a["custom_metadata"]) == {"title_json", "slug_json"}),
        # No categories: an empty relationship, so removed categories are cleared in Klaviyo.
        ({"categories": []}, lambda a, r: r == {"categories": {"data": []}}),
        # Preferred currency absent → the first regular price in any currency.
        ({}, lambda a, r: a["price"] == 19.99),
    ],
)
def test_item_edge_cases(current: dict[str, Any], check: Any) -> None:
    attributes, relationships = item_attributes(product(current=current), CatalogConfig(),
                                                now=NOW)
    assert check(attributes, relationships)


def test_category_ids_without_expansion_are_the_own_ones() -> None:
    data = product(current={"categories": [ref("category", "a"), ref("category", "b"),
                                           ref("category", "a")]}).master_data.current
    assert category_ids(data) == ["a", "b"]


# -- variants --------------------------------------------------------------------------------------


def test_variants_without_sku_are_split_off() -> None:
    with_sku, without = split_variants(product().master_data.current)
    assert [v.sku for v in with_sku] == ["SKU-1", "SKU-2"]
    assert without == [3]
    no_sku = product().master_data.current.variants[1]
    with pytest.raises(ValueError):
        variant_attributes(product(), no_sku, CatalogConfig(), now=NOW)


def test_variant_attributes() -> None:
    config = CatalogConfig(locale="de", currency="EUR", url_template="https://s/{slug}?v={sku}")
    item = product()
    attributes, relationships = variant_attributes(item, item.master_data.current.variants[0],
                                                   config, now=NOW)
    metadata = attributes.pop("custom_metadata")
    assert attributes == {
        "external_id": "SKU-2",
        "sku": "SKU-2",
        "title": "Blaue Jeans",
        "description": "Jeansstoff",
        "url": "https://s/blaue-jeans?v=SKU-2",
        "price": 20.99,
        "inventory_quantity": 0,
        "inventory_policy": 1,
        "published": True,
        # No images of its own: the master variant's.
        "images": ["https://img/1.jpg", "https://img/2.jpg"],
        "image_full_url": "https://img/1.jpg",
    }
    assert _json(metadata, "price_json")["price_EUR"] == 20.99
    assert metadata["title_json"] == '{"title_en":"Blue Jeans","title_de":"Blaue Jeans"}'
    assert relationships == {"item": {"data": {"type": "catalog-item",
                                               "id": "$custom:::$default:::p-1"}}}


def test_master_variant_as_variant() -> None:
    item = product()
    attributes, _ = variant_attributes(item, item.master_data.current.master_variant,
                                       CatalogConfig(), now=NOW)
    assert attributes["sku"] == "SKU-1" and attributes["inventory_quantity"] == 7
    assert attributes["price"] == 19.99 and attributes["url"] == ""


# -- stock -----------------------------------------------------------------------------------------


def availability(qty: int | None = None, **channels: int | None) -> ProductVariantAvailability:
    return ProductVariantAvailability.model_validate({
        **({"availableQuantity": qty} if qty is not None else {}),
        "channels": {ch: ({"availableQuantity": q} if q is not None else {"isOnStock": False})
                     for ch, q in channels.items()},
    })


@pytest.mark.parametrize(
    ("avail", "channel", "expected"),
    [
        (None, None, 0),  # no availability → 0
        (availability(5), None, 5),
        (availability(), None, 0),  # availability without a quantity → 0
        (availability(5, ch1=3), None, 5),  # channels ignored when none is configured
        (availability(5, ch1=3), "ch1", 3),  # the configured channel wins
        (availability(5, ch1=0), "ch1", 0),  # … a 0 there too (reference fell back to 5)
        (availability(5, ch2=3), "ch1", 5),  # channel not stocked → channel-less stock
        (availability(None, ch2=3), "ch1", 0),  # … or 0
        (availability(5, ch1=None), "ch1", 5),  # channel entry without a quantity → fallback
    ],
)
def test_availability_quantity(avail: ProductVariantAvailability | None, channel: str | None,
                               expected: int) -> None:
    assert availability_quantity(avail, channel) == expected


def entry(qty: int, channel: str | None = None) -> InventoryEntry:
    return InventoryEntry.model_validate({
        "id": f"inv-{channel}", "sku": "SKU-1", "availableQuantity": qty, "quantityOnStock": qty,
        **({"supplyChannel": ref("channel", channel)} if channel else {}),
    })


@pytest.mark.parametrize(
    ("entries", "channel", "expected"),
    [
        ([], None, 0),  # no entries (the last one was deleted) → 0
        ([], "ch1", 0),
        ([entry(4)], None, 4),
        ([entry(0)], None, 0),  # 0 is a quantity, sent as such
        ([entry(4), entry(9, "ch1")], None, 4),  # channel entries ignored without a channel
        ([entry(9, "ch1")], None, 0),
        ([entry(4), entry(9, "ch1")], "ch1", 9),  # the channel's entry wins …
        ([entry(9, "ch1"), entry(4)], "ch1", 9),  # … whatever the order (no overwrite)
        ([entry(4), entry(0, "ch1")], "ch1", 0),  # … even at 0 (reference: skipped)
        ([entry(4), entry(9, "ch2")], "ch1", 4),  # other channel → channel-less fallback
        ([entry(9, "ch2")], "ch1", 0),  # … or 0
    ],
)
def test_inventory_quantity(entries: list[InventoryEntry], channel: str | None,
                            expected: int) -> None:
    assert inventory_quantity(entries, channel) == expected


def test_config_from_settings() -> None:
    from shared.config import load_settings

    settings = load_settings(
        ctp_project_key="p", ctp_client_id="c", ctp_client_secret="s",
        ctp_api_url="http://ct", ctp_auth_url="http://ct", klaviyo_api_key="k",
        preferred_locale="de", preferred_currency="chf", product_url_template="https://s/{slug}",
        inventory_channel_id=" ch1 ",
    )
    assert CatalogConfig.from_settings(settings) == CatalogConfig(
        locale="de", currency="CHF", url_template="https://s/{slug}", inventory_channel_id="ch1")


def test_config_rejects_bad_catalog_settings() -> None:
    from shared.config import load_settings
    from shared.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        load_settings(ctp_project_key="p", ctp_client_id="c", ctp_client_secret="s",
                      ctp_api_url="http://ct", ctp_auth_url="http://ct", klaviyo_api_key="k",
                      preferred_currency="euro", product_url_template="https://s/{slugg}")
    assert "PREFERRED_CURRENCY" in str(error.value) and "PRODUCT_URL_TEMPLATE" in str(error.value)


# -- issue 15: attributes in custom_metadata, one locale per product, §4 gaps ----------------------

from shared.mapping.catalog_metadata import MAX_METADATA_BYTES, attribute_metadata  # noqa: E402


def attributed(variant_attributes: list[dict[str, Any]],
               product_attributes: list[dict[str, Any]] | None = None) -> Product:
    master = {"id": 1, "sku": "SKU-1", "prices": [price(1999)], "attributes": variant_attributes}
    current: dict[str, Any] = {"masterVariant": master, "variants": [
        {"id": 2, "sku": "SKU-2", "attributes": [{"name": "size", "value": "34"}]}]}
    if product_attributes is not None:
        current["attributes"] = product_attributes
    return product(current=current)


VARIANT_ATTRIBUTES: list[dict[str, Any]] = [
    {"name": "size", "value": "32"},
    {"name": "color", "value": {"key": "blue", "label": {"en": "Blue", "de": "Blau"}}},
    {"name": "tags", "value": ["a", "b"]},
    {"name": "secret", "value": "cost price"},
]


@pytest.mark.parametrize(("names", "locale", "expected"), [
    ((), None, {}),  # opt-in: nothing by default
    (("size",), None, {"size": "32"}),
    (("color", "tags"), "de", {"color": "Blau", "tags": "a, b"}),
    (("brand",), None, {"brand": "ACME"}),  # product-level attribute
    (("size", "brand", "missing"), None, {"size": "32", "brand": "ACME"}),
    (("title_json",), None, {}),  # never replaces the connector's own keys
])
def test_catalog_attributes_in_custom_metadata(names: tuple[str, ...], locale: str | None,
                                               expected: dict[str, Any]) -> None:
    item = attributed(VARIANT_ATTRIBUTES + [{"name": "title_json", "value": "x"}],
                      [{"name": "brand", "value": "ACME"}, {"name": "size", "value": "P"}])
    config = CatalogConfig(locale=locale, attributes=names)
    attributes, _ = item_attributes(item, config, now=NOW)
    metadata = attributes["custom_metadata"]
    assert {k: v for k, v in metadata.items() if not k.endswith("_json")} == expected
    assert metadata["title_json"].startswith('{"title_en"')
    # Flat: every value is a string, number or boolean.
    assert all(isinstance(v, (str, int, float, bool)) for v in metadata.values())


def test_variant_metadata_has_the_variants_own_values() -> None:
    item = attributed(VARIANT_ATTRIBUTES, [{"name": "size", "value": "product-level"}])
    config = CatalogConfig(attributes=("size",))
    second = item.master_data.current.variants[0]
    attributes, _ = variant_attributes(item, second, config, now=NOW)
    assert attributes["custom_metadata"]["size"] == "34"


def test_attribute_metadata_stays_within_klaviyos_size() -> None:
    big = "x" * (MAX_METADATA_BYTES // 2)
    item = attributed([{"name": "a", "value": big}, {"name": "b", "value": big},
                       {"name": "c", "value": "small"}])
    config = CatalogConfig(attributes=("a", "b", "c"))
    attributes, _ = item_attributes(item, config, now=NOW)
    metadata = attributes["custom_metadata"]
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    assert size <= MAX_METADATA_BYTES
    # The first named that fit are kept; one that does not fit is left out, later small ones
    # still go.
    assert "a" in metadata and "b" not in metadata and metadata["c"] == "small"


def test_attribute_metadata_budget_is_exact() -> None:
    data = attributed([{"name": "k", "value": "vvvv"}]).master_data.current
    cost = len('"k":"vvvv",')
    assert attribute_metadata(data, data.master_variant, ("k",), None, cost) == {"k": "vvvv"}
    assert attribute_metadata(data, data.master_variant, ("k",), None, cost - 1) == {}


@pytest.mark.parametrize(("name", "slug", "description", "locale", "expected"), [
    # PREFERRED_LOCALE unset: everything in the name's first locale.
    ({"de": "Hose", "en": "Pants"}, {"en": "pants", "de": "hose"},
     {"en": "Trousers", "de": "Eine Hose"}, None, ("Hose", "https://s/hose", "Eine Hose")),
    ({"en": "Pants", "de": "Hose"}, {"de": "hose", "en": "pants"},
     {"de": "Eine Hose", "en": "Trousers"}, None, ("Pants", "https://s/pants", "Trousers")),
    # A preferred locale the name lacks: the name's first locale, for all fields.
    ({"fr": "Pantalon"}, {"en": "pants", "fr": "pantalon"}, {"en": "Trousers"}, "de",
     ("Pantalon", "https://s/pantalon", "Trousers")),
])
def test_one_locale_per_product(name: dict[str, str], slug: dict[str, str],
                                description: dict[str, str], locale: str | None,
                                expected: tuple[str, str, str]) -> None:
    item = product(current={"name": name, "slug": slug, "description": description})
    config = CatalogConfig(locale=locale, url_template="https://s/{slug}")
    attributes, _ = item_attributes(item, config, now=NOW)
    assert (attributes["title"], attributes["url"], attributes["description"]) == expected
    variant, _ = variant_attributes(item, item.master_data.current.variants[0], config, now=NOW)
    assert (variant["title"], variant["url"].split("?")[0]) == expected[:2]


def test_variant_preferred_currency_and_inventory_channel() -> None:
    variant_doc = {"id": 2, "sku": "SKU-2",
                   "prices": [price(1000), price(1500, "CHF"), price(1200, "USD")],
                   "availability": {"availableQuantity": 3, "channels": {
                       "ch-1": {"availableQuantity": 0}, "ch-2": {"availableQuantity": 9}}}}
    item = product(current={"variants": [variant_doc]})
    variant = item.master_data.current.variants[0]
    cases = [(CatalogConfig(), 10.0, 3), (CatalogConfig(currency="CHF"), 15.0, 3),
             (CatalogConfig(currency="JPY"), 0.0, 3),
             (CatalogConfig(inventory_channel_id="ch-1"), 10.0, 0),  # 0 there is 0
             (CatalogConfig(inventory_channel_id="ch-2", currency="USD"), 12.0, 9),
             (CatalogConfig(inventory_channel_id="ch-gone"), 10.0, 3)]
    for config, expected_price, quantity in cases:
        attributes, _ = variant_attributes(item, variant, config, now=NOW)
        assert (attributes["price"], attributes["inventory_quantity"]) == (
            expected_price, quantity), config


@pytest.mark.parametrize(("valid_from", "valid_until", "chosen"), [
    (NOW, None, 5.0),            # starts exactly now: active
    (None, NOW, 5.0),            # ends exactly now: still active
    (NOW, NOW, 5.0),
    (datetime(2026, 6, 15, 12, 0, 1, tzinfo=UTC), None, 10.0),   # a second later
    (None, datetime(2026, 6, 15, 11, 59, 59, tzinfo=UTC), 10.0),  # a second before
])
def test_price_valid_exactly_at_now(valid_from: datetime | None, valid_until: datetime | None,
                                    chosen: float) -> None:
    ranged: dict[str, Any] = {}
    if valid_from:
        ranged["validFrom"] = valid_from.isoformat()
    if valid_until:
        ranged["validUntil"] = valid_until.isoformat()
    assert price_value(prices(price(1000), price(500, **ranged)), now=NOW) == chosen


@pytest.mark.parametrize(("template", "expected"), [
    ("https://s/{slug}", "https://s/blue-jeans"),
    ("https://s/{{productSlug}}", "https://s/blue-jeans"),
    ("https://s/{id}", "https://s/p-1"),
    ("https://s/{key}", "https://s/jeans%20key"),
    ("https://s/{sku}", "https://s/SKU-1"),
    ("https://s/{slug}/{slug}", "https://s/blue-jeans/blue-jeans"),
    ("https://s/{{x}}{slug}", "https://s/{x}blue-jeans"),
    ("https://s/static", "https://s/static"),
])
def test_url_template_forms(template: str, expected: str) -> None:
    check_url_template(template)
    assert product_url(product(), CatalogConfig(url_template=template)) == expected


def test_product_without_key_or_master_sku_fills_empty_placeholders() -> None:
    item = product(key=None, current={"masterVariant": {"id": 1}})
    config = CatalogConfig(url_template="https://s/{key}/{sku}")
    assert product_url(item, config) == "https://s//"


def test_duplicate_skus_are_one_variant() -> None:
    item = product(current={"variants": [{"id": 2, "sku": "SKU-1"}, {"id": 3, "sku": "SKU-3"},
                                         {"id": 4, "sku": "SKU-3"}]})
    with_sku, without = split_variants(item.master_data.current)
    assert [(v.id, v.sku) for v in with_sku] == [(1, "SKU-1"), (3, "SKU-3")]
    assert without == []


def test_catalog_attributes_setting() -> None:
    from shared.config import load_settings

    settings = load_settings(
        ctp_project_key="p", ctp_client_id="c", ctp_client_secret="s",
        ctp_api_url="http://ct", ctp_auth_url="http://ct", klaviyo_api_key="k",
        catalog_attributes=" color, size ,",
    )
    assert CatalogConfig.from_settings(settings).attributes == ("color", "size")


# -- pinned by mutation testing ------------------------------------------------------------------


REAL_NOW_EXPIRED = {"validFrom": "2026-06-01T00:00:00Z", "validUntil": "2026-06-30T00:00:00Z"}


def test_item_and_variant_prices_are_taken_at_the_given_now() -> None:
    # A sale valid at NOW only: the mapping must use the `now` it is given, not the clock.
    sale = [price(1000), price(500, **REAL_NOW_EXPIRED)]
    item = product(current={"masterVariant": {"id": 1, "sku": "SKU-1", "prices": sale},
                            "variants": [{"id": 2, "sku": "SKU-2", "prices": sale}]})
    attributes, _ = item_attributes(item, CatalogConfig(), now=NOW)
    assert attributes["price"] == 5.0
    assert _json(attributes["custom_metadata"], "price_json")["price_EUR"] == 5
    variant, _ = variant_attributes(item, item.master_data.current.variants[0], CatalogConfig(),
                                    now=NOW)
    assert variant["price"] == 5.0
    assert _json(variant["custom_metadata"], "price_json")["price_EUR"] == 5
    later = datetime(2026, 7, 1, tzinfo=UTC)
    assert item_attributes(item, CatalogConfig(), now=later)[0]["price"] == 10.0


def test_naive_datetimes_are_utc() -> None:
    naive_now = datetime(2026, 6, 15, 12, 0)
    ranged = prices(price(1000), price(500, validFrom="2026-06-15T12:00:00"))
    assert price_value(ranged, now=naive_now) == 5.0
    assert price_value(ranged, now=datetime(2026, 6, 15, 11, 59)) == 10.0


def test_earliest_started_ranged_price_wins_whatever_the_order() -> None:
    ranged = prices(price(700, validFrom="2026-06-10T00:00:00Z"),
                    price(600, validUntil="2026-07-01T00:00:00Z"),
                    price(800, validFrom="2026-06-01T00:00:00Z"))
    # No validFrom counts as "from now": later than both starts.
    assert price_value(ranged, now=NOW) == 8.0


def test_price_metadata_skips_a_currency_without_an_active_price() -> None:
    metadata = price_metadata(prices(price(500, "USD", validUntil="2026-01-01T00:00:00Z"),
                                     price(1000, "EUR")), now=NOW)
    assert "price_USD" not in _json(metadata, "price_json")
    assert _json(metadata, "price_json")["price_EUR"] == 10


@pytest.mark.parametrize(("template", "message"), [
    ("https://s/{nope}", "unknown placeholder {nope}; use {id}, {key}, {sku}, {slug}"),
    ("https://s/{{x}}/{nope}", "unknown placeholder {nope}"),  # after a literal brace
    ("https://s/{slug!r}", "placeholder {slug} takes no conversion or format"),
    ("https://s/{slug:>5}", "placeholder {slug} takes no conversion or format"),
    ("https://s/{", "malformed placeholder (Single '{' encountered in format string)"),
])
def test_url_template_errors_name_the_problem(template: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        check_url_template(template)
    assert str(error.value).startswith(message)


def test_variant_without_sku_error_names_the_variant() -> None:
    item = product()
    with pytest.raises(ValueError, match="^variant 3 has no SKU$"):
        variant_attributes(item, item.master_data.current.variants[1], CatalogConfig(), now=NOW)


def test_product_without_slug_or_name() -> None:
    item = product(current={"slug": {}, "name": {}})
    config = CatalogConfig(url_template="https://s/{slug}")
    assert product_url(item, config) == "https://s/"
    assert item_attributes(item, config, now=NOW)[0]["title"] == "jeans key"  # the key
    no_key = product(key=None, current={"name": {}})
    assert item_attributes(no_key, config, now=NOW)[0]["title"] == "p-1"  # then the id


def test_ancestor_without_name_shows_its_key_then_its_id() -> None:
    keyed = {"id": "c-a", "key": "a-key", "name": {}}
    unkeyed = {"id": "c-b", "name": {}}
    cat = category({"en": "Jeans", "de": "Jeans DE"}, keyed, unkeyed)
    assert category_name(cat, "de") == "a-key > c-b > Jeans DE"


def test_category_ids_skip_malformed_ancestor_entries() -> None:
    data = product(current={"categories": [ref("category", "c", {
        "id": "c", "ancestors": ["junk", {"typeId": "category"}, ref("category", "r")]})]}
    ).master_data.current
    assert category_ids(data) == ["c", "r"]


def test_attribute_metadata_product_level_in_the_products_locale() -> None:
    item = product(current={
        "name": {"de": "Hose", "en": "Pants"},
        "attributes": [{"name": "material", "value": {"en": "Cotton", "de": "Baumwolle"}}],
        "masterVariant": {"id": 1, "sku": "SKU-1", "attributes": [
            {"name": "fit", "value": {"en": "Slim", "de": "Schmal"}}]},
    })
    config = CatalogConfig(attributes=("missing", "material", "fit"))
    metadata = item_attributes(item, config, now=NOW)[0]["custom_metadata"]
    assert (metadata["material"], metadata["fit"]) == ("Baumwolle", "Schmal")
    variant, _ = variant_attributes(item, item.master_data.current.master_variant, config,
                                    now=NOW)
    assert variant["custom_metadata"]["fit"] == "Schmal"
