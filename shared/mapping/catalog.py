"""commercetools products and variants → Klaviyo catalog items and variants.

Pure functions: no I/O, no clock unless `now` is left out. The realtime processors and the bulk
import both build their Klaviyo bodies from these, passing the results to
`shared.klaviyo.catalog_resource(kind, op, external_id, attributes, relationships)`. External
ids: item → CT product id, variant → SKU (also in `external_id`).

What an item and a variant share is here (the settings, the texts, the storefront URL, images);
the parts with rules of their own have their own modules: `catalog_categories` (categories and an
item's category ids), `catalog_prices` (which price is shown), `catalog_metadata`
(`custom_metadata`), `catalog_stock` (`inventory_quantity`). Baseline is the reference plugin
(anchor-behaviour §2.11–2.12); where it differs, see the notes on `product_url`,
`item_attributes`, `split_variants` and `variant_attributes`.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared.commercetools.models.product import Product, ProductData, ProductVariant
from shared.klaviyo.catalog import catalog_ref
from shared.mapping.catalog_categories import category_ids
from shared.mapping.catalog_metadata import custom_metadata
from shared.mapping.catalog_prices import price_value
from shared.mapping.catalog_stock import availability_quantity
from shared.mapping.common import localized, resource_locale
from shared.setting_syntax import normalise_url_template

if TYPE_CHECKING:
    from shared.config import Settings

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


# -- items and variants --------------------------------------------------------------------------


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
        "custom_metadata": custom_metadata(data, master, attributes=config.attributes,
                                           locale=product_locale(product, config), now=now),
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
        "custom_metadata": custom_metadata(data, variant, attributes=config.attributes,
                                           locale=product_locale(product, config), now=now),
        **_image_attributes(image.url for image in images),
    }
    relationships = {"item": {"data": catalog_ref("item", product.id)}}
    return attributes, relationships
