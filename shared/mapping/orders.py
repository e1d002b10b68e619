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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from shared.commercetools.models.base import Money
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
from shared.mapping.limits import limit_properties
from shared.mapping.products import (
    ProductInfo,
    ProductLookup,
    product_url,
)

if TYPE_CHECKING:
    from shared.config import Settings

log = get_logger(__name__)


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
