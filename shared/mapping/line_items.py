"""commercetools line items → the entries of an event's Items[] (and an Ordered Product's body).

Pure. Orders and carts hold the same line item types, so a Placed Order item and a Started
Checkout item look the same in Klaviyo templates: both mappers build their Items[] here. Keys
follow Klaviyo's recommended order structure (ProductID, SKU, ProductName, Quantity, ItemPrice,
RowTotal, ProductURL, ImageURL, Categories); empty values are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Protocol

from shared.commercetools.models.base import Money
from shared.commercetools.models.cart import Cart
from shared.commercetools.models.order import (
    CustomLineItem,
    DiscountedPricePerQuantity,
    LineItem,
    Order,
)
from shared.mapping.attributes import attribute_values, display_value
from shared.mapping.common import localized, money_value, resource_locale
from shared.mapping.products import ProductInfo, ProductLookup, product_url


class ItemSettings(Protocol):
    """The settings an item entry reads: OrderMappingConfig and CheckoutMappingConfig both have
    them (read-only, as on those frozen dataclasses)."""

    @property
    def locale(self) -> str | None: ...
    @property
    def product_url_template(self) -> str | None: ...
    @property
    def item_attributes_include(self) -> tuple[str, ...]: ...  # empty: all
    @property
    def item_attributes_exclude(self) -> tuple[str, ...]: ...
    @property
    def brand_attribute(self) -> str | None: ...  # whose value is an item's `Brand`


def decimal_number(amount: Decimal) -> float:
    """A JSON number for an amount: float(Decimal) is the nearest double, so 19.99 stays 19.99."""
    return float(amount)


def line_discount(per_quantity: Sequence[DiscountedPricePerQuantity]) -> Decimal:
    """What a line's discounts took off, over all its quantities."""
    return sum(
        (
            portion.discounted_amount.amount * part.quantity
            for part in per_quantity
            for portion in part.discounted_price.included_discounts
        ),
        Decimal(0),
    )


def drop_empty(item: dict[str, Any]) -> dict[str, Any]:
    """Without None, [] and "": Klaviyo templates test a key's presence, not its emptiness."""
    return {k: v for k, v in item.items() if v is not None and v != [] and v != ""}


def _unit_price(li: LineItem) -> Money | None:
    if li.price is None:
        return None
    return li.price.discounted.value if li.price.discounted is not None else li.price.value


def item_brand(li: LineItem, info: ProductInfo, config: ItemSettings,
               locale: str | None) -> str | None:
    """The BRAND attribute's display value: the variant's, else the product's."""
    name = config.brand_attribute
    if not name:
        return None
    for attribute in li.variant.attributes if li.variant else []:
        if attribute.name == name:
            shown = display_value(attribute.value, locale)
            if shown is not None:
                return str(shown)
    for raw in info.attributes:
        if raw.get("name") == name:
            shown = display_value(raw.get("value"), locale)
            if shown is not None:
                return str(shown)
    return None


def line_item_properties(
    li: LineItem, lookup: ProductLookup, config: ItemSettings
) -> dict[str, Any]:
    """One entry of Items[] (and the body of its Ordered Product event).

    Every localized field is read in one locale, the one the name is shown in, so the link
    (slug) is in the language of the name (with PREFERRED_LOCALE unset: the name's first)."""
    info = lookup.get(li.product_id or "") or ProductInfo()
    locale = resource_locale(li.name, config.locale)
    sku = li.variant.sku if li.variant else None
    slug = (localized(li.product_slug, locale) or localized(info.slugs, locale) or info.slug)
    images = li.variant.images if li.variant else []
    discount = line_discount(li.discounted_price_per_quantity)
    attributes = attribute_values(
        li.variant.attributes if li.variant else [], locale,
        include=config.item_attributes_include, exclude=config.item_attributes_exclude)
    return drop_empty({
        "ProductID": li.product_id,
        "SKU": sku,
        "ProductName": localized(li.name, locale),
        "Quantity": li.quantity,
        "ItemPrice": money_value(_unit_price(li)) if li.price is not None else None,
        "RowTotal": money_value(li.total_price) if li.total_price is not None else None,
        "ProductURL": product_url(config.product_url_template, slug=slug,
                                  product_id=li.product_id, sku=sku,
                                  key=li.product_key or info.key),
        "ImageURL": images[0].url if images else None,
        "Categories": list(info.categories),
        "DiscountValue": decimal_number(discount) if discount else None,
        "Brand": item_brand(li, info, config, locale),
        "Attributes": attributes or None,
    })


def custom_line_item_properties(cli: CustomLineItem, config: ItemSettings) -> dict[str, Any]:
    """A custom line item (fee, gift wrap, …) has no product: no ProductID, SKU or URLs."""
    discount = line_discount(cli.discounted_price_per_quantity)
    return drop_empty({
        "ProductName": localized(cli.name, config.locale),
        "Quantity": cli.quantity,
        "ItemPrice": money_value(cli.money) if cli.money is not None else None,
        "RowTotal": money_value(cli.total_price) if cli.total_price is not None else None,
        "DiscountValue": decimal_number(discount) if discount else None,
    })


def item_entries(
    lines: Order | Cart, lookup: ProductLookup, config: ItemSettings
) -> list[dict[str, Any]]:
    """The Items[] entries of an order or a cart: line items, then custom line items."""
    items = [line_item_properties(li, lookup, config) for li in lines.line_items]
    items += [custom_line_item_properties(cli, config) for cli in lines.custom_line_items]
    return items
