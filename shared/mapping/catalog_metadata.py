"""A catalog item's or variant's Klaviyo `custom_metadata`: localized titles and slugs, prices
per currency and country, and the operator's CATALOG_ATTRIBUTES, within Klaviyo's size limit.

Pure. A flat JSON object; the connector's own keys (`title_json`, `slug_json`, `price_json`,
`currency_json`) are what templates and the reference plugin rely on (anchor §2.11, §2.14), so an
operator-selected attribute never replaces one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.commercetools.models.base import LocalizedString, Money
from shared.commercetools.models.product import Price, ProductData, ProductVariant
from shared.mapping.attributes import attribute_values
from shared.mapping.catalog_prices import select_price
from shared.mapping.currency_countries import countries_using

# Klaviyo's limit for an item's or variant's `custom_metadata` (a flat JSON object).
MAX_METADATA_BYTES = 100 * 1024

# One encoder for every metadata string: json.dumps with options builds a new one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _compact_json(value: dict[str, Any]) -> str:
    return _COMPACT.encode(value)


def _json_number(money: Money) -> int | float:
    # Written as JavaScript would (the reference's JSON.stringify): 10 not 10.0.
    value = money.amount.quantize(Decimal(1).scaleb(-money.fraction_digits))
    return int(value) if value == value.to_integral_value() else float(value)


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


def custom_metadata(
    data: ProductData, variant: ProductVariant, *, attributes: Sequence[str],
    locale: str | None, now: datetime | None,
) -> dict[str, Any]:
    """The variant's (for an item: the master variant's) whole `custom_metadata`; `attributes`
    are CATALOG_ATTRIBUTES, read in `locale`."""
    metadata: dict[str, Any] = {
        "title_json": localized_json("title", data.name),
        "slug_json": localized_json("slug", data.slug),
        **price_metadata(variant.prices, now=now),
    }
    if attributes:
        budget = MAX_METADATA_BYTES - len(_COMPACT.encode(metadata).encode())
        extra = attribute_metadata(data, variant, attributes, locale, budget)
        # The connector's own keys are what templates and the reference plugin rely on.
        metadata.update({k: v for k, v in extra.items() if k not in metadata})
    return metadata
