"""commercetools categories, products, variants and stock → Klaviyo catalog attributes.

Pure functions: no I/O, no clock unless `now` is left out. The realtime processors and the bulk
import both build their Klaviyo bodies from these, passing the results to
`shared.klaviyo.catalog_resource(kind, op, external_id, attributes, relationships)`. External
ids: category → CT category id, item → CT product id, variant → SKU (also in `external_id`).

Baseline is the reference plugin (anchor-behaviour §2.10–2.15); where it differs, see the notes on
`select_price`, `price_metadata`, `variant_attributes` and the two inventory functions.
"""

from __future__ import annotations

import functools
import json
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import ValidationError

from shared.commercetools.models.base import CtModel, LocalizedString, Money, Reference
from shared.commercetools.models.category import Category
from shared.commercetools.models.inventory import InventoryEntry
from shared.commercetools.models.product import (
    Price,
    Product,
    ProductData,
    ProductVariant,
    ProductVariantAvailability,
)
from shared.klaviyo.catalog import catalog_ref
from shared.mapping.attributes import attribute_values
from shared.mapping.common import localized, money_value, resource_locale
from shared.mapping.currency_countries import countries_using
from shared.setting_syntax import normalise_url_template

if TYPE_CHECKING:
    from shared.config import Settings

BREADCRUMB_SEPARATOR = " > "
# Klaviyo's limit for an item's or variant's `custom_metadata` (a flat JSON object).
MAX_METADATA_BYTES = 100 * 1024
# Klaviyo: 1 = hide the variant from product feeds/recommendations while out of stock.
INVENTORY_POLICY = 1


@dataclass(frozen=True)
class CatalogConfig:
    """The settings the catalog mappers read (build with `from_settings`)."""

    locale: str | None = None
    currency: str | None = None
    url_template: str | None = None
    inventory_channel_id: str | None = None
    attributes: tuple[str, ...] = ()  # CATALOG_ATTRIBUTES: copied into custom_metadata

    @classmethod
    def from_settings(cls, settings: Settings) -> CatalogConfig:
        return cls(
            locale=settings.preferred_locale,
            currency=settings.preferred_currency,
            url_template=settings.product_url_template,
            inventory_channel_id=settings.inventory_channel_id,
            attributes=tuple(settings.catalog_attributes),
        )


def product_locale(product: Product, config: CatalogConfig) -> str | None:
    """The one locale all of a product's localized fields are read in (its name's: see
    `resource_locale`), so title, description, URL slug and attributes share a language."""
    return resource_locale(product.master_data.current.name, config.locale)


# -- URLs ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _parsed_template(template: str) -> tuple[str, frozenset[str]]:
    """The normalised template and the placeholder names it uses (parsed once per template)."""
    normalised = normalise_url_template(template)
    names = frozenset(name for _, name, _, _ in string.Formatter().parse(normalised) if name)
    return normalised, names


def product_url(product: Product, config: CatalogConfig, sku: str | None = None) -> str:
    """The storefront URL from PRODUCT_URL_TEMPLATE; `sku` defaults to the master variant's.

    Without a template the URL is empty: Klaviyo requires the attribute, and an empty string lets
    templates test for it (the reference plugin sent the text "None").
    """
    if not config.url_template:
        return ""
    data = product.master_data.current
    template, used = _parsed_template(config.url_template)
    values = {
        "slug": lambda: localized(data.slug, product_locale(product, config)) or "",
        "id": lambda: product.id,
        "key": lambda: product.key or "",
        "sku": lambda: sku if sku is not None else (data.master_variant.sku or ""),
    }
    # Only the placeholders the template uses are computed and quoted (once per variant).
    return template.format(**{name: quote(values[name](), safe="") for name in used})


# -- categories ----------------------------------------------------------------------------------


def _category_label(name: LocalizedString | None, fallback: str, locale: str | None) -> str:
    return localized(name, locale) or fallback


class _Ancestor(CtModel):
    """The fields of an expanded ancestor (`ref.obj`, a raw document) the breadcrumb reads."""

    name: LocalizedString = {}
    key: str | None = None


def _ancestor_label(ref: Reference, locale: str | None) -> str | None:
    """An expanded ancestor's name; None when it is not expanded or not readable (an expanded
    reference is a raw document: a malformed one must not fail the whole mapping)."""
    if ref.obj is None:
        return None
    try:
        ancestor = _Ancestor.model_validate(ref.obj)
    except ValidationError:
        return None
    return _category_label(ancestor.name, ancestor.key or ref.id, locale)


def category_name(category: Category, locale: str | None = None) -> str:
    """Breadcrumb of the ancestors' and the category's names, root first: `Women > Pants > Jeans`.

    Needs `ancestors[*]` expanded; an ancestor that is not (it was deleted meanwhile), or whose
    expanded document is unreadable, is left out rather than shown as an id.
    """
    labels = (_ancestor_label(ref, locale) for ref in category.ancestors)
    names = [label for label in labels if label is not None]
    names.append(_category_label(category.name, category.key or category.id, locale))
    return BREADCRUMB_SEPARATOR.join(names)


def category_attributes(category: Category, locale: str | None = None) -> dict[str, Any]:
    """Klaviyo catalog-category attributes (`external_id` is dropped from updates)."""
    return {"external_id": category.id, "name": category_name(category, locale)}


def category_ids(data: ProductData) -> list[str]:
    """The product's categories, then their ancestors, without repeats.

    Ancestors only when `masterData.current.categories[*]` is expanded (their references are in
    the category); Klaviyo lists an item under each id, so "Women" shows what is in "Jeans".
    """
    ids = [ref.id for ref in data.categories]
    for ref in data.categories:
        for ancestor in (ref.obj or {}).get("ancestors") or []:
            if isinstance(ancestor, dict) and ancestor.get("id"):
                ids.append(ancestor["id"])
    return list(dict.fromkeys(ids))


# -- prices --------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def select_price(
    prices: Sequence[Price], currency: str | None = None, *, now: datetime | None = None
) -> Price | None:
    """The price shown for a variant, by the reference plugin's priority (anchor §2.13):

    1. only prices in `currency` when one is given;
    2. a *ranged* price (with validFrom and/or validUntil) active now wins; among several, the
       earliest-started (then earliest-ending) one. Future and expired ones never count;
    3. else the first *regular* price (no validity dates) in commercetools' order.

    Differs from the reference: customer-group prices are never chosen (it skipped them only
    among regular prices), because a group's price is not the public price.
    """
    now = _utc(now or datetime.now(UTC))
    candidates = [
        p for p in prices
        if p.customer_group is None and (not currency or p.value.currency_code == currency)
    ]
    ranged = [
        p for p in candidates
        if (p.valid_from or p.valid_until)
        and (p.valid_from is None or _utc(p.valid_from) <= now)
        and (p.valid_until is None or now <= _utc(p.valid_until))
    ]
    if ranged:
        far = datetime.max.replace(tzinfo=UTC)
        return min(
            ranged,
            key=lambda p: (
                _utc(p.valid_from) if p.valid_from else now,
                _utc(p.valid_until) if p.valid_until else far,
            ),
        )
    return next((p for p in candidates if not p.valid_from and not p.valid_until), None)


def price_value(
    prices: Sequence[Price], currency: str | None = None, *, now: datetime | None = None
) -> float:
    """Klaviyo `price`: the selected price in major units, 0 when none matches."""
    chosen = select_price(prices, currency, now=now)
    return money_value(chosen.value) if chosen else 0.0


def _json_number(money: Money) -> int | float:
    # Written as JavaScript would (the reference's JSON.stringify): 10 not 10.0.
    value = money.amount.quantize(Decimal(1).scaleb(-money.fraction_digits))
    return int(value) if value == value.to_integral_value() else float(value)


# One encoder for every metadata string: json.dumps with options builds a new one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _compact_json(value: dict[str, Any]) -> str:
    return _COMPACT.encode(value)


def price_metadata(
    prices: Sequence[Price], *, now: datetime | None = None
) -> dict[str, str]:
    """`price_json` and `currency_json` custom metadata (JSON strings), {} without prices.

    Per currency, in order of first appearance, the price `select_price` picks in it:
    `price_<CUR>` plus, for the country of that price, or else every country using the currency,
    `price_<CC>` and `currency_<CC>`; a later currency overwrites an earlier one's country keys.
    Differs from the reference: a currency with no price active now is left out instead of being
    advertised at 0.
    """
    if not prices:
        return {}
    by_key: dict[str, int | float] = {}
    currencies: dict[str, str] = {}
    for currency in dict.fromkeys(p.value.currency_code for p in prices):
        chosen = select_price(prices, currency, now=now)
        if chosen is None:
            continue
        amount = _json_number(chosen.value)
        by_key[f"price_{currency}"] = amount
        countries = (chosen.country,) if chosen.country else countries_using(currency)
        for country in countries:
            by_key[f"price_{country}"] = amount
            currencies[f"currency_{country}"] = currency
    return {"price_json": _compact_json(by_key), "currency_json": _compact_json(currencies)}


def localized_json(prefix: str, text: LocalizedString | None) -> str:
    """`{"<prefix>_<locale>": value}` for every locale, as a JSON string (`title_json`, ...)."""
    return _compact_json({f"{prefix}_{locale}": value for locale, value in (text or {}).items()})


# -- items and variants --------------------------------------------------------------------------


def attribute_metadata(
    data: ProductData, variant: ProductVariant, names: Sequence[str], locale: str | None,
    budget: int,
) -> dict[str, Any]:
    """CATALOG_ATTRIBUTES as flat custom_metadata entries: the variant's value, else the
    product-level one, each its display value (see mapping.attributes). Attributes that would
    take the metadata past `budget` bytes of JSON are left out, last named first."""
    if not names:
        return {}
    values = attribute_values(variant.attributes, locale)
    for name, value in attribute_values(data.attributes, locale).items():
        values.setdefault(name, value)
    chosen: dict[str, Any] = {}
    for name in names:  # the operator's order: the first named are kept first
        if name not in values:
            continue
        cost = len(_COMPACT.encode({name: values[name]}).encode()) - 1  # without the braces
        if cost > budget:
            continue
        chosen[name] = values[name]
        budget -= cost
    return chosen


def _custom_metadata(
    data: ProductData, variant: ProductVariant, now: datetime | None, config: CatalogConfig,
    locale: str | None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "title_json": localized_json("title", data.name),
        "slug_json": localized_json("slug", data.slug),
        **price_metadata(variant.prices, now=now),
    }
    if config.attributes:
        budget = MAX_METADATA_BYTES - len(_COMPACT.encode(metadata).encode())
        extra = attribute_metadata(data, variant, config.attributes, locale, budget)
        # The connector's own keys are what templates and the reference plugin rely on.
        metadata.update({k: v for k, v in extra.items() if k not in metadata})
    return metadata


def _texts(product: Product, config: CatalogConfig) -> dict[str, str]:
    data = product.master_data.current
    locale = product_locale(product, config)
    return {
        # Klaviyo requires both; commercetools requires a name but not a description.
        "title": localized(data.name, locale) or product.key or product.id,
        "description": localized(data.description, locale) or "",
    }


def _image_attributes(urls: Iterable[str]) -> dict[str, Any]:
    images = list(urls)
    attributes: dict[str, Any] = {"images": images}
    if images:
        attributes["image_full_url"] = images[0]
    return attributes


def item_attributes(
    product: Product, config: CatalogConfig, *, now: datetime | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Klaviyo catalog-item (attributes, relationships) from the product's current data.

    The categories relationship is always sent, empty too: the reference plugin left it out for
    a product without categories, so removing a product's last category never reached Klaviyo.
    """
    data = product.master_data.current
    master = data.master_variant
    attributes: dict[str, Any] = {
        "external_id": product.id,
        **_texts(product, config),
        "url": product_url(product, config),
        "price": price_value(master.prices, config.currency, now=now),
        "published": product.master_data.published,
        "custom_metadata": _custom_metadata(data, master, now, config,
                                            product_locale(product, config)),
        **_image_attributes(image.url for image in master.images),
    }
    relationships = {
        "categories": {"data": [catalog_ref("category", cid) for cid in category_ids(data)]}
    }
    return attributes, relationships


def split_variants(data: ProductData) -> tuple[list[ProductVariant], list[int]]:
    """(variants with a SKU, ids of those without). A Klaviyo variant is keyed by its SKU, so
    one without cannot be written (the reference plugin sent `…:::undefined`)."""
    with_sku: list[ProductVariant] = []
    without: list[int] = []
    seen: set[str] = set()
    for variant in data.all_variants:
        if not variant.sku:
            without.append(variant.id)
        elif variant.sku not in seen:
            seen.add(variant.sku)
            with_sku.append(variant)
    return with_sku, without


def variant_attributes(
    product: Product, variant: ProductVariant, config: CatalogConfig, *,
    now: datetime | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Klaviyo catalog-variant (attributes, relationships). Raises ValueError without a SKU.

    Title, description and URL are the product's (the URL's `{sku}` is this variant's). A variant
    without images shows the master variant's (the reference sent none).
    """
    if not variant.sku:
        raise ValueError(f"variant {variant.id} has no SKU")
    data = product.master_data.current
    images = variant.images or data.master_variant.images
    attributes: dict[str, Any] = {
        "external_id": variant.sku,
        "sku": variant.sku,
        **_texts(product, config),
        "url": product_url(product, config, sku=variant.sku),
        "price": price_value(variant.prices, config.currency, now=now),
        "inventory_quantity": availability_quantity(
            variant.availability, config.inventory_channel_id
        ),
        "inventory_policy": INVENTORY_POLICY,
        "published": product.master_data.published,
        "custom_metadata": _custom_metadata(data, variant, now, config,
                                            product_locale(product, config)),
        **_image_attributes(image.url for image in images),
    }
    relationships = {"item": {"data": catalog_ref("item", product.id)}}
    return attributes, relationships


# -- stock ---------------------------------------------------------------------------------------


def availability_quantity(
    availability: ProductVariantAvailability | None, channel_id: str | None = None
) -> int:
    """`inventory_quantity` from a variant's availability (product sync and bulk).

    The configured channel's quantity when the variant has stock there, 0 included (the reference
    treated 0 as "no value" and fell back to other stock); else the channel-less quantity; else 0.
    """
    if availability is None:
        return 0
    if channel_id and channel_id in availability.channels:
        quantity = availability.channels[channel_id].available_quantity
        if quantity is not None:
            return quantity
    return availability.available_quantity or 0


def inventory_quantity(entries: Iterable[InventoryEntry], channel_id: str | None = None) -> int:
    """`inventory_quantity` from all current inventory entries of one SKU (inventory messages).

    Same rule as `availability_quantity`: the configured channel's entry wins, 0 included; a
    channel-less entry is the fallback and never overwrites it; entries of other channels are
    ignored; no entry (e.g. the last one was deleted) means 0.
    """
    channel_less: InventoryEntry | None = None
    for entry in entries:
        if entry.supply_channel is None:
            channel_less = entry
        elif channel_id and entry.supply_channel.id == channel_id:
            return entry.available_quantity
    return channel_less.available_quantity if channel_less is not None else 0
