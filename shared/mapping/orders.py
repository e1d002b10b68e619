"""commercetools Order (+ payments) → Klaviyo order events. Pure: the caller does all I/O.

Realtime processors call the per-trigger functions (`placed_order_events`, `state_change_event`,
`refund_event`); the bulk import calls `order_events`, which yields every event an order's current
state implies. Both produce the same events with the same `unique_id`s, so an order seen by both
is recorded once in Klaviyo.

This module decides which events an order gets, for whom, when, with which value and
`unique_id`. What they say is built elsewhere: the order-level properties in
`mapping.order_properties`, the Items[] entries (and each Ordered Product's body) in
`mapping.line_items`, both cut to Klaviyo's limits by `mapping.limits` here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.commercetools.models.base import Money
from shared.commercetools.models.order import Order
from shared.commercetools.models.payment import Payment, Transaction
from shared.log import get_logger
from shared.mapping.common import klaviyo_time, money_value
from shared.mapping.customers import map_location
from shared.mapping.events import KlaviyoEvent
from shared.mapping.limits import limit_properties
from shared.mapping.line_items import item_entries
from shared.mapping.order_properties import order_properties
from shared.mapping.products import ProductLookup

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


def placed_order_wanted(order: Order, config: OrderMappingConfig) -> bool:
    """PLACED_ORDER_STATES: Placed Order only for orders (now) in one of these states."""
    return not config.placed_order_states or order.order_state in config.placed_order_states


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
