"""Product with its master data (current and staged), variants, prices and availability."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.commercetools.models.base import CtModel, LocalizedString, Money, Reference


class Image(CtModel):
    url: str
    label: str | None = None
    dimensions: dict[str, int] | None = None


class DiscountedPrice(CtModel):
    value: Money
    discount: Reference | None = None


class Price(CtModel):
    id: str | None = None
    key: str | None = None
    value: Money
    country: str | None = None
    customer_group: Reference | None = None
    channel: Reference | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    discounted: DiscountedPrice | None = None


class ChannelAvailability(CtModel):
    is_on_stock: bool | None = None
    available_quantity: int | None = None
    restockable_in_days: int | None = None


class ProductVariantAvailability(CtModel):
    """Channel-less stock at the top level, per supply channel id in `channels`."""

    is_on_stock: bool | None = None
    available_quantity: int | None = None
    restockable_in_days: int | None = None
    channels: dict[str, ChannelAvailability] = {}


class Attribute(CtModel):
    name: str
    value: Any = None


class ProductVariant(CtModel):
    id: int
    sku: str | None = None
    key: str | None = None
    prices: list[Price] = []
    images: list[Image] = []
    attributes: list[Attribute] = []
    availability: ProductVariantAvailability | None = None


class ProductData(CtModel):
    name: LocalizedString = {}
    description: LocalizedString | None = None
    slug: LocalizedString = {}
    # Expanded (`masterData.current.categories[*]`) they carry the Category, whose `ancestors`
    # references give the ids of the ancestors without a further request.
    categories: list[Reference] = []
    attributes: list[Attribute] = []  # product-level attributes (not per variant)
    master_variant: ProductVariant
    variants: list[ProductVariant] = []

    @property
    def all_variants(self) -> list[ProductVariant]:
        """The master variant first, then the others (commercetools' order)."""
        return [self.master_variant, *self.variants]


class ProductCatalogData(CtModel):
    published: bool = False
    has_staged_changes: bool | None = None
    current: ProductData
    staged: ProductData | None = None


class Product(CtModel):
    id: str
    version: int | None = None
    key: str | None = None
    product_type: Reference | None = None
    master_data: ProductCatalogData
    created_at: str | None = None
    last_modified_at: str | None = None
