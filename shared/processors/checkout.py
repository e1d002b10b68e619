"""Cart changes → Klaviyo "Started Checkout" (the trigger of abandoned-cart flows).

commercetools has no "checkout started" message, so the processor listens to the cart's change
notifications (ResourceCreated / ResourceUpdated). Those never carry the cart, and deliveries are
unordered anyway, so the cart is always read by id: the event describes the cart as it is now,
and a cart that was ordered or merged meanwhile is not reported.
"""

from __future__ import annotations

from functools import partial

from shared.commercetools.client import predicate_string
from shared.commercetools.messages import CtMessage
from shared.commercetools.models.cart import Cart
from shared.config import Settings
from shared.log import get_logger
from shared.mapping.checkout import (
    CheckoutMappingConfig,
    checkout_profile,
    product_ids,
    skip_reason,
    started_checkout_event,
)
from shared.mapping.products import ProductLookup
from shared.processors.base import Context, Processor, Trigger, read_current
from shared.processors.orders import fetch_product_lookup

log = get_logger(__name__)

CART_CHANGES = frozenset({"ResourceCreated", "ResourceUpdated"})


def _customer_email(ctx: Context, cart: Cart) -> str | None:
    """A signed-in shopper's cart may have no customerEmail: the customer's email then."""
    if cart.customer_email or not cart.customer_id:
        return None
    document = ctx.ct.get_customer(cart.customer_id, deadline=ctx.deadline)
    email = (document or {}).get("email")
    return email if isinstance(email, str) and email else None


def _has_order(ctx: Context, cart: Cart) -> bool:
    """An order created from the cart. Its cart state says Ordered then, but an order imported or
    created by another path may not have changed it: one query settles it before sending."""
    page = ctx.ct.query_page(
        "orders", after=None, limit=1, where=[f"cart(id={predicate_string(cart.id)})"],
        deadline=ctx.deadline,
    )
    return bool(page)


def _lookup(ctx: Context, cart: Cart, config: CheckoutMappingConfig) -> ProductLookup:
    return fetch_product_lookup(ctx, product_ids(cart), config.locale)


def started_checkout(message: CtMessage, ctx: Context, *, config: CheckoutMappingConfig) -> int:
    cart_id = message.resource.id
    cart = read_current(ctx, "carts", cart_id, Cart)
    if cart is None:
        return 0
    # Cheap checks on the cart first: most cart edits are not checkouts and cost one read only.
    reason = skip_reason(cart, config)
    if reason is not None:
        log.info("cart not in checkout; nothing sent", ctCartId=cart_id, reason=reason)
        return 0
    customer_email = _customer_email(ctx, cart)
    if checkout_profile(cart, customer_email) is None:
        log.info("cart has no email; nothing sent", ctCartId=cart_id)
        return 0
    if _has_order(ctx, cart):
        log.info("cart already ordered; nothing sent", ctCartId=cart_id)
        return 0
    event = started_checkout_event(cart, _lookup(ctx, cart, config), config,
                                   customer_email=customer_email)
    if event is None:  # not reached: every reason to skip was checked above
        return 0
    ctx.klaviyo.create_event(event.attributes(), deadline=ctx.deadline)
    log.info("started checkout sent", ctCartId=cart_id, uniqueId=event.unique_id)
    return 1


def processors(settings: Settings) -> list[Processor]:
    handle = partial(started_checkout, config=CheckoutMappingConfig.from_settings(settings))
    return [Processor("StartedCheckout", Trigger("cart", changes=CART_CHANGES), handle)]
