"""commercetools Order (+ payments) → Klaviyo order events. Pure: the caller does all I/O.

Realtime processors call the per-trigger functions (`placed_order_events`, `state_change_event`,
`refund_event`); the bulk import calls `order_events`, which yields every event an order's current
state implies. Both produce the same events with the same `unique_id`s, so an order seen by both
is recorded once in Klaviyo.

Properties follow Klaviyo's recommended order structure (OrderId, ItemNames, Categories, Items[]
with ProductID/SKU/ProductName/Quantity/ItemPrice/RowTotal/ProductURL/ImageURL/Categories), not
the raw order: the reference plugin's whole-order properties break Klaviyo's limits and carry
addresses. Raw fields are sent only when ORDER_PROPERTIES_INCLUDE names them.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import ValidationError

from shared.commercetools.models.base import CtModel, LocalizedString, Money, Reference
from shared.commercetools.models.customer import Address
from shared.commercetools.models.order import (
    CustomLineItem,
    DiscountedPricePerQuantity,
    LineItem,
    Order,
    ShippingInfo,
)
from shared.commercetools.models.payment import Payment, Transaction
from shared.log import get_logger
from shared.mapping.attributes import attribute_values, display_value
from shared.mapping.common import klaviyo_time, localized, money_value, resource_locale
from shared.mapping.customers import address_region, map_location
from shared.mapping.events import KlaviyoEvent

if TYPE_CHECKING:
    from shared.config import Settings

log = get_logger(__name__)

# Klaviyo's event limits (reference/api-facts.md §3.3). The property count is the stricter of the
# two documented numbers; the byte budget leaves room under the 5 MB payload for the envelope.
MAX_PROPERTIES = 300
MAX_STRING_BYTES = 100 * 1024
MAX_ARRAY_ITEMS = 4000
MAX_DEPTH = 10
MAX_PROPERTIES_BYTES = 4 * 1024 * 1024

# Properties this module generates (the rest are operator-selected raw order fields).
GENERATED_KEYS = frozenset({
    "OrderId", "OrderNumber", "ItemNames", "Categories", "Items", "DiscountCode", "DiscountValue",
    "ShippingMethod", "ShippingValue", "PaymentId", "ProductID", "SKU", "ProductName", "Quantity",
    "ItemPrice", "RowTotal", "ProductURL", "ImageURL", "Attributes", "Brand", "Brands",
    "BillingAddress", "ShippingAddress", "TotalTax",
})
CATEGORY_SEPARATOR = " > "
ORDER_STATE_DEFAULTS = {"Cancelled": "cancelled", "Confirmed": "fulfilled", "Complete": "fulfilled"}
SHIPMENT_STATE_DEFAULTS = {"Shipped": "fulfilled", "Delivered": "fulfilled"}


@dataclass(frozen=True)
class OrderMappingConfig:
    """The settings the order mapping reads (a plain value, so bulk and tests can build one)."""

    placed_order_metric: str = "Placed Order"
    ordered_product_metric: str = "Ordered Product"
    fulfilled_order_metric: str = "Fulfilled Order"
    cancelled_order_metric: str = "Cancelled Order"
    refunded_order_metric: str = "Refunded Order"
    order_state_metrics: Mapping[str, str] = field(
        default_factory=lambda: {"Cancelled": "Cancelled Order", "Confirmed": "Fulfilled Order",
                                 "Complete": "Fulfilled Order"}
    )
    shipment_state_metrics: Mapping[str, str] = field(
        default_factory=lambda: {"Shipped": "Fulfilled Order", "Delivered": "Fulfilled Order"}
    )
    properties_include: tuple[str, ...] = ()
    properties_exclude: tuple[str, ...] = ()
    properties_rename: Mapping[str, str] = field(default_factory=dict)
    locale: str | None = None
    product_url_template: str | None = None
    # Variant attributes sent as an item's `Attributes` (include empty: all).
    item_attributes_include: tuple[str, ...] = ()
    item_attributes_exclude: tuple[str, ...] = ()
    brand_attribute: str | None = None  # whose value is an item's `Brand`
    placed_order_states: tuple[str, ...] = ()  # Placed Order only in these (empty: any)

    @classmethod
    def from_settings(cls, settings: Settings) -> OrderMappingConfig:
        by_kind = {
            "fulfilled": settings.metric_fulfilled_order,
            "cancelled": settings.metric_cancelled_order,
        }
        order_states = settings.order_state_metrics
        if order_states is None:  # defaults follow renamed metrics
            order_states = {state: by_kind[kind] for state, kind in ORDER_STATE_DEFAULTS.items()}
        shipment_states = settings.order_shipment_state_metrics
        if shipment_states is None:
            shipment_states = {s: by_kind[kind] for s, kind in SHIPMENT_STATE_DEFAULTS.items()}
        return cls(
            placed_order_metric=settings.metric_placed_order,
            ordered_product_metric=settings.metric_ordered_product,
            fulfilled_order_metric=settings.metric_fulfilled_order,
            cancelled_order_metric=settings.metric_cancelled_order,
            refunded_order_metric=settings.metric_refunded_order,
            order_state_metrics=dict(order_states),
            shipment_state_metrics=dict(shipment_states),
            properties_include=tuple(settings.order_properties_include),
            properties_exclude=tuple(settings.order_properties_exclude),
            properties_rename=dict(settings.order_properties_rename),
            locale=settings.preferred_locale,
            product_url_template=settings.product_url_template,
            item_attributes_include=tuple(settings.order_item_attributes_include),
            item_attributes_exclude=tuple(settings.order_item_attributes_exclude),
            brand_attribute=settings.order_brand_attribute,
            placed_order_states=tuple(settings.placed_order_states),
        )


# ---- product lookups (built by the caller from commercetools documents) ---------------------


@dataclass(frozen=True)
class ProductInfo:
    """What an order event needs from the ordered product beyond the line item itself."""

    categories: tuple[str, ...] = ()  # breadcrumbs, every level: "Women", "Women > Pants", …
    slug: str | None = None
    key: str | None = None
    slugs: LocalizedString = field(default_factory=dict)  # every locale (see line_item_properties)
    # Product-level attributes (raw `{name, value}`): where the brand is when no variant has it.
    attributes: tuple[Mapping[str, Any], ...] = ()


ProductLookup = Mapping[str, ProductInfo]  # by product id


def product_ids(order: Order) -> list[str]:
    """Ids of the ordered products, first occurrence order (what the caller must fetch)."""
    return list(dict.fromkeys(li.product_id for li in order.line_items if li.product_id))


def category_ids(products: Iterable[Mapping[str, Any]]) -> list[str]:
    """Ids of the current categories of these raw Product documents."""
    ids: list[str] = []
    for product in products:
        current = ((product.get("masterData") or {}).get("current")) or {}
        for ref in current.get("categories") or []:
            if isinstance(ref, Mapping) and ref.get("id"):
                ids.append(ref["id"])
    return list(dict.fromkeys(ids))


class _Category(CtModel):
    # Lenient on purpose (only what a breadcrumb needs): a category that fails the catalog's
    # stricter model must still name an order's items.
    id: str
    name: LocalizedString = {}
    ancestors: list[Reference] = []  # root first; `obj` holds the Category when expanded


class _ProductData(CtModel):
    slug: LocalizedString = {}
    categories: list[Reference] = []
    attributes: list[dict[str, Any]] = []


class _MasterData(CtModel):
    current: _ProductData = _ProductData()


class _Product(CtModel):
    id: str
    key: str | None = None
    master_data: _MasterData = _MasterData()


def category_breadcrumbs(
    category: Mapping[str, Any], names: Mapping[str, LocalizedString], locale: str | None
) -> list[str]:
    """Every level of a raw Category's path, root first: ["Women", "Women > Pants"].

    Ancestor names come from the expanded `ancestors[*].obj` or, failing that, from `names`; an
    ancestor whose name is unknown is left out of the path rather than shown as an id.
    """
    parsed = _Category.model_validate(category)
    path: list[str] = []
    for ref in parsed.ancestors:
        name = localized((ref.obj or {}).get("name") or names.get(ref.id), locale)
        if name:
            path.append(name)
    own = localized(parsed.name, locale)
    if own:
        path.append(own)
    return [CATEGORY_SEPARATOR.join(path[: i + 1]) for i in range(len(path))]


def product_lookup(
    products: Iterable[Mapping[str, Any]],
    categories: Iterable[Mapping[str, Any]] = (),
    *,
    locale: str | None = None,
) -> dict[str, ProductInfo]:
    """ProductInfo by product id from raw Product documents and raw Categories (with
    `ancestors[*]` expanded, or with the ancestors themselves among `categories`).

    A document that does not parse only loses its enrichment: the order's events still go.
    """
    by_id: dict[str, Mapping[str, Any]] = {}
    names: dict[str, LocalizedString] = {}
    for doc in categories:
        try:
            category = _Category.model_validate(doc)
        except ValidationError:
            log.warning("category document unreadable; left out of Categories",
                        ctCategoryId=str(doc.get("id")))
            continue
        by_id[category.id] = doc
        names[category.id] = category.name
        for ref in category.ancestors:
            if ref.obj and ref.obj.get("name"):
                names.setdefault(ref.id, ref.obj["name"])

    lookup: dict[str, ProductInfo] = {}
    for doc in products:
        try:
            product = _Product.model_validate(doc)
        except ValidationError:
            log.warning("product document unreadable; order items lack its categories",
                        ctProductId=str(doc.get("id")))
            continue
        current = product.master_data.current
        paths: list[str] = []
        for ref in current.categories:
            found = by_id.get(ref.id) or ref.obj
            if found is None:
                continue
            try:
                paths.extend(category_breadcrumbs(found, names, locale))
            except ValidationError:
                continue
        lookup[product.id] = ProductInfo(
            categories=tuple(dict.fromkeys(paths)),
            slug=localized(current.slug, locale),
            key=product.key,
            slugs=dict(current.slug),
            attributes=tuple(current.attributes),
        )
    return lookup


def product_url(
    template: str | None, *, slug: str | None, product_id: str | None, sku: str | None,
    key: str | None = None,
) -> str | None:
    """PRODUCT_URL_TEMPLATE filled from a line item, in the catalog's syntax (`{slug}` `{id}`
    `{key}` `{sku}`, `{{productSlug}}` accepted, `{{` a literal brace; see mapping.catalog), so
    order events link to the same page as the catalog item. None when the template needs a value
    the item lacks (the product was deleted, say): a URL with a hole in it is worse than none.
    """
    if not template:
        return None
    values = {"slug": slug, "id": product_id, "key": key, "sku": sku}
    try:
        template, used = _url_template(template)
        if any(not values.get(name) for name in used):
            return None
        return template.format(**{n: quote(values[n] or "", safe="") for n in used})
    except (ValueError, KeyError, IndexError):  # the settings validator rejects these first
        return None


@lru_cache(maxsize=16)
def _url_template(template: str) -> tuple[str, frozenset[str]]:
    """The template in `str.format` syntax and the field names it uses (parsed once: every
    line item of every event fills it)."""
    template = template.replace("{{productSlug}}", "{slug}")
    used = frozenset(name for _, name, _, _ in string.Formatter().parse(template)
                     if name is not None)
    return template, used


# ---- building blocks ------------------------------------------------------------------------


def order_profile(order: Order, *, with_location: bool = False) -> dict[str, Any] | None:
    """The event's profile; None when the order names nobody Klaviyo could attribute it to.

    A registered customer's order is identified by `external_id` (the customer id) alone: the
    order's `customerEmail` and billing address are snapshots from when it was placed, and an
    older order fulfilled, cancelled or refunded (or replayed by a bulk sync) after the customer
    changed them would write the abandoned address back onto the profile. The profile's email
    and location are the customer processor's, from the customer's current data. Only a guest
    order (no customer id) is identified by its own email, with its billing location.
    """
    if order.customer_id:
        return {"external_id": order.customer_id}
    if not order.customer_email:
        return None
    profile: dict[str, Any] = {"email": order.customer_email}
    if with_location and order.billing_address is not None:
        # (US state as region when region is empty: see map_location.)
        location = map_location(order.billing_address)
        if location:
            profile["location"] = location
    return profile


def _number(amount: Decimal) -> float:
    # float(Decimal) is the nearest double, so 19.99 stays 19.99 in JSON.
    return float(amount)


def _line_discount(per_quantity: Sequence[DiscountedPricePerQuantity]) -> Decimal:
    return sum(
        (
            portion.discounted_amount.amount * part.quantity
            for part in per_quantity
            for portion in part.discounted_price.included_discounts
        ),
        Decimal(0),
    )


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


def _drop_empty(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None and v != [] and v != ""}


def _unit_price(li: LineItem) -> Money | None:
    if li.price is None:
        return None
    return li.price.discounted.value if li.price.discounted is not None else li.price.value


def item_brand(li: LineItem, info: ProductInfo, config: OrderMappingConfig,
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
    li: LineItem, lookup: ProductLookup, config: OrderMappingConfig
) -> dict[str, Any]:
    """One entry of Items[] (and the body of its Ordered Product event).

    Every localized field is read in one locale, the one the name is shown in, so the link
    (slug) is in the language of the name (with PREFERRED_LOCALE unset: the name's first)."""
    info = lookup.get(li.product_id or "") or ProductInfo()
    locale = resource_locale(li.name, config.locale)
    sku = li.variant.sku if li.variant else None
    slug = (localized(li.product_slug, locale) or localized(info.slugs, locale) or info.slug)
    images = li.variant.images if li.variant else []
    discount = _line_discount(li.discounted_price_per_quantity)
    attributes = attribute_values(
        li.variant.attributes if li.variant else [], locale,
        include=config.item_attributes_include, exclude=config.item_attributes_exclude)
    return _drop_empty({
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
        "DiscountValue": _number(discount) if discount else None,
        "Brand": item_brand(li, info, config, locale),
        "Attributes": attributes or None,
    })


def custom_line_item_properties(cli: CustomLineItem, config: OrderMappingConfig) -> dict[str, Any]:
    """A custom line item (fee, gift wrap, …) has no product: no ProductID, SKU or URLs."""
    discount = _line_discount(cli.discounted_price_per_quantity)
    return _drop_empty({
        "ProductName": localized(cli.name, config.locale),
        "Quantity": cli.quantity,
        "ItemPrice": money_value(cli.money) if cli.money is not None else None,
        "RowTotal": money_value(cli.total_price) if cli.total_price is not None else None,
        "DiscountValue": _number(discount) if discount else None,
    })


def selected_order_fields(order: Order, config: OrderMappingConfig) -> dict[str, Any]:
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
    mapped = _drop_empty({
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
        return _number(taxed.total_gross.amount - taxed.total_net.amount)
    return None


def placed_order_wanted(order: Order, config: OrderMappingConfig) -> bool:
    """PLACED_ORDER_STATES: Placed Order only for orders (now) in one of these states."""
    return not config.placed_order_states or order.order_state in config.placed_order_states


def item_entries(
    order: Order, lookup: ProductLookup, config: OrderMappingConfig
) -> list[dict[str, Any]]:
    """The Items[] entries: line items, then custom line items."""
    items = [line_item_properties(li, lookup, config) for li in order.line_items]
    items += [custom_line_item_properties(cli, config) for cli in order.custom_line_items]
    return items


def order_properties(
    order: Order, lookup: ProductLookup, config: OrderMappingConfig, *,
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
        sum((_line_discount(li.discounted_price_per_quantity) for li in order.line_items),
            Decimal(0))
        + sum((_line_discount(c.discounted_price_per_quantity) for c in order.custom_line_items),
              Decimal(0))
        + sum((_shipping_discount(i) for i in infos), Decimal(0))
        + (order.discount_on_total_price.discounted_amount.amount
           if order.discount_on_total_price is not None else Decimal(0))
    )
    # Codes are only known when the caller expanded `discountCodes[*].discountCode`.
    codes = [str((d.discount_code.obj or {}).get("code")) for d in order.discount_codes
             if (d.discount_code.obj or {}).get("code")]

    generated = _drop_empty({
        "OrderId": order.id,
        "OrderNumber": order.order_number,
        "ItemNames": list(dict.fromkeys(n for n in names if n)),
        "Categories": list(dict.fromkeys(categories)),
        "Items": items,
        "DiscountCode": ", ".join(dict.fromkeys(codes)) or None,
        "DiscountValue": _number(discount) if discount else None,
        "ShippingMethod": ", ".join(dict.fromkeys(
            i.shipping_method_name for i in infos if i.shipping_method_name)) or None,
        "ShippingValue": _number(sum(charged, Decimal(0))) if charged else None,
        "TotalTax": total_tax(order),
        "Brands": list(dict.fromkeys(i["Brand"] for i in items if i.get("Brand"))),
        "BillingAddress": order_address(order.billing_address),
        "ShippingAddress": order_address(order.shipping_address),
    })
    # The Klaviyo structure is the contract flows rely on: a selected raw field never replaces it.
    extra = {k: v for k, v in selected_order_fields(order, config).items() if k not in generated}
    return {**generated, **extra}


# ---- Klaviyo limits -------------------------------------------------------------------------


# The size *bounds* below only decide whether the exact size must be measured (`_size`): a
# larger bound just measures more often, so mutants that raise it are equivalent; they are kept
# out of mutation testing (`no mutate`), and the tests pin the limits on the results instead.
# pragma: no mutate start
_SHORT_STRING = MAX_STRING_BYTES // 4  # UTF-8 needs at most 4 bytes a character: these fit
_SMALL_INT = 10**18


def _key_bound(key: Any) -> float:
    """The most bytes `json.dumps` writes for a dict key with its colon and comma (infinite
    when that is not cheap to tell: a key json.dumps refuses must reach `_size`)."""
    kind = type(key)
    if kind is str:
        return 12 * len(key) + 4
    if key is None or kind is bool or kind is float or (
            kind is int and -_SMALL_INT < key < _SMALL_INT):
        return 30
    return math.inf


def _scalar_bound(value: Any) -> float:
    kind = type(value)
    if value is None or kind is bool or kind is float or (
            kind is int and -_SMALL_INT < value < _SMALL_INT):
        return 25
    return math.inf  # serialised with `default=str` (or a subclass): only `_size` can tell


def _plain(value: Any) -> float | None:
    """The JSON size bound of a value that no limit can change (a short string, a number, a
    boolean, null); None for anything else."""
    kind = type(value)
    if kind is str:
        return 12 * len(value) + 2 if len(value) <= _SHORT_STRING else None
    if value is None or kind is bool or kind is float or (
            kind is int and -_SMALL_INT < value < _SMALL_INT):
        return 25
    return None


# pragma: no mutate end


def _limit_value(value: Any, depth: int, counter: list[int], bound: list[float]) -> Any:
    """`value` cut to Klaviyo's string, array and nesting limits; `depth` is its container's.

    Adds what was cut to `counter[0]`, and to `bound[0]` at most the bytes `json.dumps` writes
    for the result (ASCII: at most 12 per character, for an escaped surrogate pair).
    """
    if isinstance(value, str):
        if len(value) > _SHORT_STRING:
            encoded = value.encode()
            if len(encoded) > MAX_STRING_BYTES:
                counter[0] += 1
                value = encoded[:MAX_STRING_BYTES].decode(errors="ignore")
        bound[0] += 12 * len(value) + 2  # pragma: no mutate
        return value
    if isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        counter[0] += 1
        return None
    if isinstance(value, dict):
        out = {}
        size = 2.0  # pragma: no mutate
        for key, inner in value.items():
            plain = _plain(inner)
            if plain is not None:  # kept as it is, no call needed
                size += plain  # pragma: no mutate
                limited = inner
            else:
                limited = _limit_value(inner, depth + 1, counter, bound)
                if limited is None and inner is not None:
                    continue
            out[key] = limited
            size += 12 * len(key) + 4 if type(key) is str else _key_bound(key)  # pragma: no mutate
        bound[0] += size  # pragma: no mutate
        return out
    if isinstance(value, list):
        if len(value) > MAX_ARRAY_ITEMS:
            counter[0] += len(value) - MAX_ARRAY_ITEMS
            value = value[:MAX_ARRAY_ITEMS]
        out_list = []
        size = 2.0  # pragma: no mutate
        for inner in value:
            plain = _plain(inner)
            if plain is not None:
                size += plain + 1  # pragma: no mutate
                out_list.append(inner)
                continue
            limited = _limit_value(inner, depth + 1, counter, bound)
            if limited is not None or inner is None:
                out_list.append(limited)
                size += 1  # pragma: no mutate
        bound[0] += size  # pragma: no mutate
        return out_list
    bound[0] += _scalar_bound(value)  # pragma: no mutate
    return value


def _size(properties: Mapping[str, Any]) -> int:
    return len(json.dumps(properties, separators=(",", ":"), default=str).encode())


def limit_properties(properties: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """Event properties within Klaviyo's limits, and how many things were cut to get there.

    Deterministic and never failing: properties beyond MAX_PROPERTIES are dropped from the end
    (selected raw fields come after the Klaviyo structure), strings are cut at 100 KB, arrays at
    4000 entries, containers deeper than 10 levels are dropped; if the whole is still too large,
    raw fields go first, then Items[] is shortened. (The exact size is measured only when an
    upper bound gathered on the way does not already show the properties are small enough.)
    """
    counter = [0]
    bound = [2.0]  # pragma: no mutate
    keys = list(properties)
    if len(keys) > MAX_PROPERTIES:
        counter[0] += len(keys) - MAX_PROPERTIES
        keys = keys[:MAX_PROPERTIES]
    limited: dict[str, Any] = {}
    for key in keys:
        value = _limit_value(properties[key], 1, counter, bound)
        if value is not None or properties[key] is None:
            limited[key] = value
            bound[0] += _key_bound(key)  # pragma: no mutate
    while bound[0] > MAX_PROPERTIES_BYTES and _size(limited) > MAX_PROPERTIES_BYTES:
        extra = [k for k in limited if k not in GENERATED_KEYS]
        items = limited.get("Items")
        if extra:
            del limited[extra[-1]]
            counter[0] += 1
        elif isinstance(items, list) and items:
            keep = len(items) * 3 // 4
            counter[0] += len(items) - keep
            limited["Items"] = items[:keep]
        else:
            others = [k for k in limited if k != "OrderId"]
            if not others:
                break
            del limited[others[-1]]
            counter[0] += 1
    return limited, counter[0]


def _event(
    order: Order, metric: str, properties: Mapping[str, Any], *, time: str, unique_id: str,
    value: float, currency: str, profile: dict[str, Any],
) -> KlaviyoEvent:
    limited, cut = limit_properties(properties)
    if cut:
        log.warning("order event properties cut to Klaviyo's limits", ctOrderId=order.id,
                    metric=metric, uniqueId=unique_id, cutCount=cut)
    return KlaviyoEvent(metric=metric, profile=profile, properties=limited,
                        time=klaviyo_time(time), unique_id=unique_id, value=value,
                        value_currency=currency)


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def state_unique_id(order: Order, metric: str, config: OrderMappingConfig) -> str:
    """`<orderId>:fulfilled` / `:cancelled`; another metric from the state maps gets its slug.

    One id per order and metric: Confirmed then Complete (or Shipped) is one Fulfilled Order.
    """
    if metric == config.fulfilled_order_metric:
        kind = "fulfilled"
    elif metric == config.cancelled_order_metric:
        kind = "cancelled"
    else:
        kind = _slug(metric) or "state"
    return f"{order.id}:{kind}"


# ---- events ---------------------------------------------------------------------------------


def placed_order_events(
    order: Order, lookup: ProductLookup, config: OrderMappingConfig, *,
    items: list[dict[str, Any]] | None = None, properties: Mapping[str, Any] | None = None,
) -> list[KlaviyoEvent]:
    """Placed Order, then one Ordered Product per line item and custom line item.

    All at the order's creation time; the distinct unique_ids keep them apart, so no
    one-second offsets are needed. [] when the order has no customer id and no email, or is
    not in one of PLACED_ORDER_STATES.
    `items` / `properties`: the order's `item_entries` / `order_properties`, when the caller
    has built them already (each is built once per order either way).
    """
    profile = order_profile(order, with_location=True)
    if profile is None or not placed_order_wanted(order, config):
        return []
    plain_profile = order_profile(order) or {}
    currency = order.total_price.currency_code
    if items is None:
        items = item_entries(order, lookup, config)
    if properties is None:
        # (items= only saves building them again: equivalent for mutation testing)
        properties = order_properties(order, lookup, config, items=items)  # pragma: no mutate
    placed = _event(
        order, config.placed_order_metric, properties,
        time=order.created_at, unique_id=f"{order.id}:placed",
        value=money_value(order.total_price), currency=currency, profile=profile,
    )
    events = [placed]
    line_ids = [li.id for li in order.line_items] + [cli.id for cli in order.custom_line_items]
    totals: list[Money | None] = [li.total_price for li in order.line_items]
    totals += [cli.total_price for cli in order.custom_line_items]
    for line_id, item, total in zip(line_ids, items, totals, strict=True):  # pragma: no mutate
        line_properties = {"OrderId": order.id, **item}
        events.append(_event(
            order, config.ordered_product_metric, line_properties, time=order.created_at,
            unique_id=line_id, value=money_value(total), currency=currency,
            profile=dict(plain_profile),
        ))
    return events


def state_metrics(
    config: OrderMappingConfig, *, order_state: str | None = None,
    shipment_state: str | None = None,
) -> list[str]:
    """Metrics the given states map to (no duplicates; order state first)."""
    metrics = [
        config.order_state_metrics.get(order_state or ""),
        config.shipment_state_metrics.get(shipment_state or ""),
    ]
    return list(dict.fromkeys(m for m in metrics if m))


def state_change_event(
    order: Order, metric: str, lookup: ProductLookup, config: OrderMappingConfig,
    *, time: str | None = None, properties: Mapping[str, Any] | None = None,
) -> KlaviyoEvent | None:
    """Fulfilled / Cancelled Order (or another metric of the state maps) for the order's current
    data. `time`: when the change happened (the message's); default the order's last change.
    `properties`: the order's `order_properties`, when the caller has built them already."""
    profile = order_profile(order)
    if profile is None:
        return None
    return _event(
        order, metric,
        properties if properties is not None else order_properties(order, lookup, config),
        time=time or order.last_modified_at or order.created_at,
        unique_id=state_unique_id(order, metric, config),
        value=money_value(order.total_price), currency=order.total_price.currency_code,
        profile=profile,
    )


def is_successful_refund(transaction: Transaction) -> bool:
    return transaction.type == "Refund" and transaction.state == "Success"


def successful_refunds(payment: Payment) -> list[Transaction]:
    return [t for t in payment.transactions if is_successful_refund(t)]


def refund_event(
    order: Order, payment: Payment, transaction: Transaction, lookup: ProductLookup,
    config: OrderMappingConfig, *, time: str | None = None,
    properties: Mapping[str, Any] | None = None,
) -> KlaviyoEvent | None:
    """Refunded Order for one successful refund transaction: its own amount and currency, its id
    as unique_id, so each partial refund is its own event. None for any other transaction.
    `properties`: the order's `order_properties`, when the caller has built them already."""
    if not is_successful_refund(transaction):
        return None
    profile = order_profile(order)
    if profile is None:
        return None
    if properties is None:
        properties = order_properties(order, lookup, config)
    properties = {**properties, "PaymentId": payment.id}
    return _event(
        order, config.refunded_order_metric, properties,
        time=time or transaction.timestamp or order.last_modified_at or order.created_at,
        unique_id=transaction.id, value=money_value(transaction.amount),
        currency=transaction.amount.currency_code, profile=profile,
    )


def expanded_payments(order: Order) -> list[Payment]:
    """The order's payments when fetched with `expand=paymentInfo.payments[*]`."""
    if order.payment_info is None:
        return []
    return [Payment.model_validate(ref.obj) for ref in order.payment_info.payments if ref.obj]


def order_events(
    order: Order, payments: Iterable[Payment], lookup: ProductLookup, config: OrderMappingConfig
) -> list[KlaviyoEvent]:
    """Every event the order's current state implies: Placed Order + Ordered Product, the state
    maps' metrics for its order and shipment state, and one Refunded Order per successful refund.

    For the bulk import; unique_ids equal the realtime ones, so nothing is recorded twice.
    The Items[] entries and the order-level properties are built once for all the events.
    """
    if order_profile(order) is None:
        return []
    # Built once and handed on: passing them only saves work (equivalent mutants: no mutate).
    items = item_entries(order, lookup, config)  # pragma: no mutate
    properties = order_properties(order, lookup, config, items=items)  # pragma: no mutate
    events = placed_order_events(  # pragma: no mutate
        order, lookup, config, items=items, properties=properties)
    for metric in state_metrics(config, order_state=order.order_state,
                                shipment_state=order.shipment_state):
        event = state_change_event(  # pragma: no mutate
            order, metric, lookup, config, properties=properties)
        if event is not None:
            events.append(event)
    for payment in payments:
        for transaction in successful_refunds(payment):
            event = refund_event(order, payment, transaction, lookup, config,  # pragma: no mutate
                                 properties=properties)  # pragma: no mutate
            if event is not None:
                events.append(event)
    return events
