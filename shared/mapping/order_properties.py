"""What an order-level event says: the properties of Placed, Fulfilled, Cancelled and Refunded
Order, from the order's current data. Pure.

Klaviyo's recommended order structure (OrderId, ItemNames, Categories, Items[], discounts,
shipping, tax, addresses), not the raw order: the reference plugin's whole-order properties break
Klaviyo's limits and carry addresses. Raw fields are added only when ORDER_PROPERTIES_INCLUDE
names them, and never replace a generated key. Which events an order gets, and when, is decided
in `mapping.orders`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

from shared.commercetools.models.customer import Address
from shared.commercetools.models.order import Order, ShippingInfo
from shared.mapping.common import localized, money_value
from shared.mapping.customers import address_region
from shared.mapping.line_items import (
    ItemSettings,
    decimal_number,
    drop_empty,
    item_entries,
    line_discount,
)
from shared.mapping.products import ProductInfo, ProductLookup


class PropertySettings(ItemSettings, Protocol):
    """The settings the order-level properties read (OrderMappingConfig has them): the items'
    and ORDER_PROPERTIES_INCLUDE / _EXCLUDE / _RENAME."""

    @property
    def properties_include(self) -> tuple[str, ...]: ...
    @property
    def properties_exclude(self) -> tuple[str, ...]: ...
    @property
    def properties_rename(self) -> Mapping[str, str]: ...


def _shipping_infos(order: Order) -> list[ShippingInfo]:
    if order.shipping_info is not None:
        return [order.shipping_info]
    return [s.shipping_info for s in order.shipping if s.shipping_info is not None]


def _shipping_charged(info: ShippingInfo) -> Decimal | None:
    if info.discounted_price is not None:
        return info.discounted_price.value.amount
    return info.price.amount if info.price is not None else None


def _shipping_discount(info: ShippingInfo) -> Decimal:
    if info.discounted_price is None:
        return Decimal(0)
    return sum((p.discounted_amount.amount for p in info.discounted_price.included_discounts),
               Decimal(0))


def selected_order_fields(order: Order, config: PropertySettings) -> dict[str, Any]:
    """The raw order fields ORDER_PROPERTIES_INCLUDE asks for, minus _EXCLUDE, renamed.

    `custom.<name>` flattens a custom field; `*` / `custom.*` select all. Falsy values (False, 0,
    "") are kept — dropping them, as the reference does, leaves stale values in Klaviyo.
    """
    raw = order.raw
    custom = ((raw.get("custom") or {}).get("fields")) or {}
    candidates: dict[str, Any] = {}
    for name in config.properties_include:
        if name == "*":
            for key, value in raw.items():
                candidates.setdefault(key, value)
        elif name == "custom.*":
            for key, value in custom.items():
                candidates.setdefault(f"custom.{key}", value)
        elif name.startswith("custom."):
            if name[7:] in custom:
                candidates.setdefault(name, custom[name[7:]])
        elif name in raw:
            candidates.setdefault(name, raw[name])
    selected: dict[str, Any] = {}
    for name, value in candidates.items():
        if name in config.properties_exclude or value is None:
            continue
        default = name[7:] if name.startswith("custom.") else name
        selected[config.properties_rename.get(name, default)] = value
    return selected


def order_address(address: Address | None) -> dict[str, Any] | None:
    """Klaviyo's BillingAddress / ShippingAddress object (its recommended Placed Order keys);
    the US state is the Region when `region` is empty."""
    if address is None:
        return None
    mapped = drop_empty({
        "FirstName": address.first_name,
        "LastName": address.last_name,
        "Company": address.company,
        "Address1": ", ".join(p for p in (address.apartment, address.building,
                                          address.street_number, address.street_name) if p),
        "Address2": ", ".join(p for p in (address.additional_street_info,
                                          address.additional_address_info) if p),
        "City": address.city,
        "Region": address_region(address),
        "CountryCode": address.country,
        "Zip": address.postal_code,
        "Phone": address.phone or address.mobile,
    })
    return mapped or None


def total_tax(order: Order) -> float | None:
    """`taxedPrice.totalTax`, else gross minus net; None for an order without taxes."""
    taxed = order.taxed_price
    if taxed is None:
        return None
    if taxed.total_tax is not None:
        return money_value(taxed.total_tax)
    if taxed.total_gross is not None and taxed.total_net is not None:
        return decimal_number(taxed.total_gross.amount - taxed.total_net.amount)
    return None


def order_properties(
    order: Order, lookup: ProductLookup, config: PropertySettings, *,
    items: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Properties of the order-level events (Placed, Fulfilled, Cancelled, Refunded Order).

    `items`: the order's `item_entries`, when the caller has built them already."""
    locale = config.locale
    if items is None:
        items = item_entries(order, lookup, config)
    names = [localized(li.name, locale) for li in order.line_items]
    names += [localized(cli.name, locale) for cli in order.custom_line_items]
    categories = [c for li in order.line_items
                  for c in (lookup.get(li.product_id or "") or ProductInfo()).categories]

    infos = _shipping_infos(order)
    charged = [c for c in (_shipping_charged(i) for i in infos) if c is not None]
    discount = (
        sum((line_discount(li.discounted_price_per_quantity) for li in order.line_items),
            Decimal(0))
        + sum((line_discount(c.discounted_price_per_quantity) for c in order.custom_line_items),
              Decimal(0))
        + sum((_shipping_discount(i) for i in infos), Decimal(0))
        + (order.discount_on_total_price.discounted_amount.amount
           if order.discount_on_total_price is not None else Decimal(0))
    )
    # Codes are only known when the caller expanded `discountCodes[*].discountCode`.
    codes = [str((d.discount_code.obj or {}).get("code")) for d in order.discount_codes
             if (d.discount_code.obj or {}).get("code")]

    generated = drop_empty({
        "OrderId": order.id,
        "OrderNumber": order.order_number,
        "ItemNames": list(dict.fromkeys(n for n in names if n)),
        "Categories": list(dict.fromkeys(categories)),
        "Items": items,
        "DiscountCode": ", ".join(dict.fromkeys(codes)) or None,
        "DiscountValue": decimal_number(discount) if discount else None,
        "ShippingMethod": ", ".join(dict.fromkeys(
            i.shipping_method_name for i in infos if i.shipping_method_name)) or None,
        "ShippingValue": decimal_number(sum(charged, Decimal(0))) if charged else None,
        "TotalTax": total_tax(order),
        "Brands": list(dict.fromkeys(i["Brand"] for i in items if i.get("Brand"))),
        "BillingAddress": order_address(order.billing_address),
        "ShippingAddress": order_address(order.shipping_address),
    })
    # The Klaviyo structure is the contract flows rely on: a selected raw field never replaces it.
    extra = {k: v for k, v in selected_order_fields(order, config).items() if k not in generated}
    return {**generated, **extra}
