"""Orders and refunds → Klaviyo order events (Placed Order, Ordered Product, Fulfilled/Cancelled
Order, Refunded Order).

Every handler reads the order (and payment) as commercetools holds it now instead of trusting the
delivery: deliveries are at-least-once, unordered and may omit the payload (`payloadNotIncluded`).
Orders are read by id (`read_current`); a refund's order is found by its payment, with the payment
expanded, in one query. The message is consulted only for *which* change happened (the new
state, the transaction id). The mapping configuration is built once, in `processors(settings)`.
Every event carries a deterministic unique_id, so a redelivery after a partial failure re-sends
what was already recorded and Klaviyo keeps one copy.

An order's events (a Placed Order and one Ordered Product per line) go in one
event-bulk-create-jobs request when it can be sent at once, else one POST /api/events each
(see `_send_bulk`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

from shared.commercetools.client import predicate_string
from shared.commercetools.messages import CtMessage
from shared.commercetools.models.order import Order
from shared.commercetools.models.payment import Payment
from shared.commercetools.product_reads import get_products_with_categories
from shared.config import Settings
from shared.errors import KlaviyoError, RetryableError
from shared.klaviyo import MAX_BULK_EVENTS
from shared.klaviyo.batches import MAX_PAYLOAD_BYTES, chunked
from shared.klaviyo.limiter import SlotUnavailable
from shared.log import get_logger
from shared.mapping.common import parse_time
from shared.mapping.events import KlaviyoEvent, bulk_entries
from shared.mapping.orders import (
    OrderMappingConfig,
    order_profile,
    placed_order_events,
    placed_order_wanted,
    refund_event,
    state_change_event,
    state_metrics,
    successful_refunds,
)
from shared.mapping.products import ProductLookup, product_ids, product_lookup
from shared.processors.base import Context, Processor, Trigger, read_current, validated

log = get_logger(__name__)

# Discount codes are references; expanded, the mapper can send the codes customers typed.
ORDER_EXPAND = ("discountCodes[*].discountCode",)
# A refund's order is found by its payment with the payment expanded: one read gives the current
# order and the current payment (commercetools resolves an expansion when it answers).
REFUND_ORDER_EXPAND = (*ORDER_EXPAND, "paymentInfo.payments[*]")
PAYMENT_MESSAGES = frozenset({"PaymentTransactionAdded", "PaymentTransactionStateChanged"})
STATE_MESSAGES = frozenset({"OrderStateChanged", "OrderShipmentStateChanged"})


def _load_order(ctx: Context, order_id: str) -> Order | None:
    return read_current(ctx, "orders", order_id, Order, expand=ORDER_EXPAND)


def _lookup(ctx: Context, order: Order, config: OrderMappingConfig) -> ProductLookup:
    return fetch_product_lookup(ctx, product_ids(order), config.locale)


def fetch_product_lookup(ctx: Context, ids: Sequence[str], locale: str | None) -> ProductLookup:
    """Categories, slugs and attributes of these products: one request however many lines
    (orders and carts both use it; unpublished products cost one more)."""
    if not ids:
        return {}
    products = get_products_with_categories(ctx.ct, ids, deadline=ctx.deadline)
    return product_lookup(products, locale=locale)


def _has_profile(order: Order) -> bool:
    if order_profile(order) is None:
        log.info("order has no customer id and no email; skipped", ctOrderId=order.id)
        return False
    return True


def _send(ctx: Context, order: Order, events: Sequence[KlaviyoEvent]) -> int:
    """Send the events: each chunk of 2+ as one event-bulk-create-jobs request when that can go
    now, otherwise (and for a lone event) one POST /api/events per event.

    Per event, a retryable failure stops at once (the redelivery re-sends everything,
    deduplicated by unique_id); a rejected event does not keep the others from being sent.
    Returns the number of events Klaviyo accepted.
    """
    writes = 0
    rejected: KlaviyoError | None = None
    for chunk in _chunks(events):
        if len(chunk) > 1 and _send_bulk(ctx, order, chunk):
            writes += len(chunk)
            continue
        for event in chunk:
            try:
                ctx.klaviyo.create_event(event.attributes(), deadline=ctx.deadline)
            except KlaviyoError as exc:
                if exc.retryable:
                    raise
                log.error("klaviyo rejected an order event", ctOrderId=order.id,
                          metric=event.metric, uniqueId=event.unique_id, **exc.log_fields())
                rejected = rejected or exc
            else:
                writes += 1
    if rejected is not None:
        raise rejected
    return writes


def _chunks(events: Sequence[KlaviyoEvent]) -> list[list[KlaviyoEvent]]:
    """Distinct events (Klaviyo fails a whole bulk request for a unique_id repeated for the same
    profile and metric, and records only the first anyway; one order is one person) in chunks
    within a bulk request's limits: ≤1,000 events and ≤MAX_PAYLOAD_BYTES."""
    seen: set[tuple[str, str]] = set()
    distinct = []
    for event in events:
        if (event.metric, event.unique_id) not in seen:
            seen.add((event.metric, event.unique_id))
            distinct.append(event)
    if len(distinct) < 2:
        return [distinct]
    return list(chunked(distinct, max_count=MAX_BULK_EVENTS, max_bytes=MAX_PAYLOAD_BYTES,
                        size=_event_size))


def _event_size(event: KlaviyoEvent) -> int:
    # Properties and profile dominate; the rest of an event's attributes stays under 200 bytes.
    return len(json.dumps([event.properties, event.profile], separators=(",", ":"),
                          default=str)) + 200


def _send_bulk(ctx: Context, order: Order, events: list[KlaviyoEvent]) -> bool:
    """One event-bulk-create-jobs request for the events (no backfill: realtime events trigger
    flows). True when Klaviyo accepted them (202).

    False, to have them sent one by one, when the request cannot go at once (the process's
    limiter has no event-bulk slot free now, or Klaviyo is blocking the family after a 429) or
    its single attempt fails in any way: 429 (the 150/min bulk budget is shared with bulk imports
    and other instances, while POST /api/events has 3,500/min), 400/413 (one bad event rejects the
    whole request; one by one the good ones are recorded and the bad one reported), 5xx or a
    timeout (the per-event path has its own budget and its own retries; if the bulk request was
    in fact recorded, the unique_ids keep the second copy out). Only a deadline that has run out
    is raised: there is no time left for the fallback either.
    """
    try:
        ctx.klaviyo.create_event_bulk_job_now(bulk_entries(events), deadline=ctx.deadline)
    except SlotUnavailable:
        log.info("klaviyo event bulk limit busy; sending order events one by one",
                 ctOrderId=order.id, events=len(events))
        return False
    except KlaviyoError as exc:
        log.warning("klaviyo event bulk request failed; sending order events one by one",
                    ctOrderId=order.id, events=len(events), **exc.log_fields())
        return False
    return True


def placed_order(message: CtMessage, ctx: Context, *, config: OrderMappingConfig) -> int:
    """Placed Order + Ordered Product per line, whatever the order's state."""
    order = _load_order(ctx, message.resource.id)
    if order is None or not _has_profile(order):
        return 0
    if not placed_order_wanted(order, config):
        log.info("order state not in PLACED_ORDER_STATES; nothing sent", ctOrderId=order.id,
                 orderState=order.order_state)
        return 0
    events = placed_order_events(order, _lookup(ctx, order, config), config)
    return _send(ctx, order, events)


def _changed_metrics(message: CtMessage, order: Order, config: OrderMappingConfig) -> list[str]:
    payload = message.payload
    if message.message_type == "OrderStateChanged":
        # The state the message reports (an old message still tells of a real transition);
        # without a payload, the order's current state.
        state = payload.get("orderState") or order.order_state
        return state_metrics(config, order_state=state)
    if message.message_type == "OrderShipmentStateChanged":
        state = payload.get("shipmentState") or order.shipment_state
        return state_metrics(config, shipment_state=state)
    # ResourceUpdated carries no state: whatever the order is in now.
    return state_metrics(config, order_state=order.order_state,
                         shipment_state=order.shipment_state)


def order_state_changed(message: CtMessage, ctx: Context, *, config: OrderMappingConfig) -> int:
    """Fulfilled / Cancelled Order (per the state maps) for a state change."""
    order = _load_order(ctx, message.resource.id)
    if order is None:
        return 0
    metrics = _changed_metrics(message, order, config)
    # PLACED_ORDER_STATES: an order that reaches a chosen state is placed now (the bulk export,
    # seeing it in that state, sends the same Placed Order; the unique_ids keep one copy).
    placed = bool(config.placed_order_states) and placed_order_wanted(order, config)
    if not metrics and not placed:
        log.info("order state not mapped to a metric; nothing sent", ctOrderId=order.id,
                 messageType=message.message_type)
        return 0
    if not _has_profile(order):
        return 0
    lookup = _lookup(ctx, order, config)
    when = message.created_at or message.modified_at
    events: list[KlaviyoEvent | None] = (
        list(placed_order_events(order, lookup, config)) if placed else [])
    events += [state_change_event(order, metric, lookup, config, time=when) for metric in metrics]
    return _send(ctx, order, [e for e in events if e is not None])


def _transaction_id(message: CtMessage) -> str | None:
    payload = message.payload
    if message.message_type == "PaymentTransactionAdded":
        transaction = payload.get("transaction")
        return transaction.get("id") if isinstance(transaction, dict) else None
    transaction_id = payload.get("transactionId")
    return transaction_id if isinstance(transaction_id, str) else None


# How long a refund of a payment that no order references yet is redelivered before it counts as
# a payment without order (bounded too by the subscription's max delivery attempts; a message
# dead-lettered meanwhile can be replayed once the payment is linked).
UNLINKED_PAYMENT_WAIT = timedelta(hours=1)


class PaymentNotLinkedYet(RetryableError):
    """The refunded payment is on no order yet: the delivery is asked for again later."""


def _younger_than(message: CtMessage, age: timedelta) -> bool:
    stamp = message.created_at or message.modified_at
    if stamp is None:
        return False
    try:
        created = parse_time(stamp)
    except ValueError:
        return False
    return datetime.now(UTC) - created < age


def order_refunded(message: CtMessage, ctx: Context, *, config: OrderMappingConfig) -> int:
    """Refunded Order for the message's refund transaction once it is Success *now*.

    A refund added as Pending sends nothing; its later change to Success sends it. Without a
    payload (no transaction id) every successful refund of the payment is sent: each has its own
    unique_id, so those already recorded are not duplicated.
    """
    payment_id = message.resource.id
    # One read: the order holding the payment, with the payment (and discount codes) expanded.
    found = ctx.ct.query_page(
        "orders", after=None, limit=1,
        where=[f"paymentInfo(payments(id={predicate_string(payment_id)}))"],
        expand=REFUND_ORDER_EXPAND, deadline=ctx.deadline)
    if not found:
        if _younger_than(message, UNLINKED_PAYMENT_WAIT):
            # The payment is usually added to its order a moment after the refund is recorded
            # (a PSP integration creates both): ask again later rather than lose the refund.
            raise PaymentNotLinkedYet(f"payment not linked to an order yet (waiting up to "
                                      f"{UNLINKED_PAYMENT_WAIT})")
        log.info("no order for the payment; skipped", ctPaymentId=payment_id)
        return 0
    order = Order.model_validate(found[0])  # found by the query: it exists
    document = next((ref.obj for ref in (order.payment_info.payments if order.payment_info
                                         else []) if ref.id == payment_id and ref.obj), None)
    # No expanded payment: the order still references it, but the payment was deleted.
    payment = validated("payments", payment_id, document, Payment, ctOrderId=order.id)
    if payment is None:
        return 0
    wanted = _transaction_id(message)
    refunds = [t for t in successful_refunds(payment) if wanted is None or t.id == wanted]
    if not refunds:
        log.info("no successful refund transaction; nothing sent", ctPaymentId=payment_id,
                 ctTransactionId=wanted)
        return 0
    if not _has_profile(order):
        return 0
    lookup = _lookup(ctx, order, config)
    events = [refund_event(order, payment, t, lookup, config) for t in refunds]
    return _send(ctx, order, [e for e in events if e is not None])


def processors(settings: Settings) -> list[Processor]:
    config = OrderMappingConfig.from_settings(settings)
    triggers = frozenset(settings.order_state_change_triggers)
    return [
        Processor(
            "OrderCreated",
            Trigger("order", messages=frozenset(settings.order_created_messages)),
            partial(placed_order, config=config),
        ),
        Processor(
            "OrderStateChanged",
            Trigger("order", messages=triggers & STATE_MESSAGES,
                    changes=triggers & {"ResourceUpdated"}),
            partial(order_state_changed, config=config),
        ),
        Processor("OrderRefunded", Trigger("payment", messages=PAYMENT_MESSAGES),
                  partial(order_refunded, config=config)),
    ]
