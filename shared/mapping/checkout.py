"""commercetools Cart → Klaviyo "Started Checkout" event. Pure: the caller does all I/O.

Klaviyo's abandoned-cart flows trigger on Started Checkout. A cart changes many times on its way to
an order, so the event is sent once per *checkout state*: its unique_id is the cart id plus a hash
of the basket (product, variant and quantity of each line), so a redelivery or an edit that leaves
the basket as it was (an address typo fixed) is deduplicated by Klaviyo, while a changed basket is
a new event (and a new flow entry with the right items).

Items[] is built as an order's is (`mapping.line_items`), so a Started Checkout item and a Placed
Order item look the same in Klaviyo templates.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from shared.commercetools.models.cart import Cart
from shared.log import get_logger
from shared.mapping.common import klaviyo_time, localized, money_value
from shared.mapping.events import KlaviyoEvent
from shared.mapping.limits import limit_properties
from shared.mapping.line_items import item_entries
from shared.mapping.products import ProductInfo, ProductLookup
from shared.setting_syntax import SignalKind, checkout_signal_parts

log = get_logger(__name__)

# A cart that became an order (Ordered) or was folded into a customer's cart at sign-in (Merged)
# is not an open checkout; the order's own events (or the surviving cart's) tell the story.
CART_STATES_NOT_SENT = frozenset({"Ordered", "Merged"})


@dataclass(frozen=True)
class CheckoutSignal:
    """What marks a cart as "in checkout" (CHECKOUT_SIGNAL)."""

    kind: SignalKind = "shipping_address"
    field: str | None = None  # the custom field's name for kind custom_field

    def present(self, cart: Cart) -> bool:
        if self.kind == "any_update":
            return True
        if self.kind == "shipping_address":
            return cart.shipping_address is not None
        value = (cart.custom.fields if cart.custom else {}).get(self.field or "")
        # A boolean flag set to false, or an emptied text field, is not a signal.
        return value is not None and value is not False and value != "" and value != []


def parse_checkout_signal(text: str) -> CheckoutSignal:
    """`shipping_address` | `any_update` | `custom_field:<name>`; ValueError otherwise."""
    kind, name = checkout_signal_parts(text)
    return CheckoutSignal(kind, name)


def checkout_url(template: str | None, cart_id: str) -> str | None:
    if not template:
        return None
    return template.format(cartId=quote(cart_id, safe=""))


@dataclass(frozen=True)
class CheckoutMappingConfig:
    metric: str = "Started Checkout"
    signal: CheckoutSignal = field(default_factory=CheckoutSignal)
    checkout_url_template: str | None = None
    locale: str | None = None
    product_url_template: str | None = None
    # The order items' attribute and brand settings: a checkout item looks like an order item
    # (this config is the `line_items.ItemSettings` the Items[] builder reads, as an order's is).
    item_attributes_include: tuple[str, ...] = ()
    item_attributes_exclude: tuple[str, ...] = ()
    brand_attribute: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> CheckoutMappingConfig:
        return cls(
            metric=settings.metric_started_checkout,
            signal=parse_checkout_signal(settings.checkout_signal),
            checkout_url_template=settings.checkout_url_template,
            locale=settings.preferred_locale,
            product_url_template=getattr(settings, "product_url_template", None),
            item_attributes_include=tuple(getattr(settings, "order_item_attributes_include", ())),
            item_attributes_exclude=tuple(getattr(settings, "order_item_attributes_exclude", ())),
            brand_attribute=getattr(settings, "order_brand_attribute", None),
        )


def skip_reason(cart: Cart, config: CheckoutMappingConfig) -> str | None:
    """Why the cart is not (yet) a checkout to report, from the cart alone; None: go on.

    The email is checked separately: it may have to be read from the cart's customer.
    """
    state = cart.cart_state
    if state is not None and state in CART_STATES_NOT_SENT:
        return f"cart {state.lower()}"
    if not cart.line_items and not cart.custom_line_items:
        return "cart empty"
    if not config.signal.present(cart):
        return "no checkout signal"
    return None


def product_ids(cart: Cart) -> list[str]:
    """Ids of the products in the cart, first occurrence order (what the caller fetches)."""
    return list(dict.fromkeys(li.product_id for li in cart.line_items if li.product_id))


def basket_hash(cart: Cart) -> str:
    """A stable hash of what is in the basket: product, variant and quantity of every line item
    (and slug and quantity of every custom line item: adding gift wrap changes the basket too).

    Sorted, so the order lines are listed in does not matter; prices, addresses and line item ids
    are left out on purpose: a repriced or re-added but identical basket is the same checkout.
    """
    lines = sorted(
        (li.product_id or "", li.variant.id if li.variant and li.variant.id is not None else -1,
         li.quantity)
        for li in cart.line_items
    )
    custom = sorted((cli.slug or "", cli.quantity) for cli in cart.custom_line_items)
    canonical = json.dumps({"lines": lines, "custom": custom}, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def checkout_unique_id(cart: Cart) -> str:
    """`<cartId>:checkout:<basket hash>` (well under Klaviyo's 255 characters)."""
    return f"{cart.id}:checkout:{basket_hash(cart)}"


def checkout_profile(
    cart: Cart, customer_email: str | None = None
) -> dict[str, Any] | None:
    """The event's profile: the cart's email (else the customer's) and the customer id as
    external_id. None without an email: an abandoned-cart email needs somewhere to go."""
    email = cart.customer_email or customer_email
    if not email:
        return None
    profile: dict[str, Any] = {"email": email}
    if cart.customer_id:
        profile["external_id"] = cart.customer_id
    return profile


def checkout_properties(
    cart: Cart, lookup: ProductLookup, config: CheckoutMappingConfig
) -> dict[str, Any]:
    """Klaviyo's recommended Started Checkout properties (the value and currency are the event's
    own `value`/`value_currency`, Klaviyo's API form of `$value`)."""
    items = item_entries(cart, lookup, config)
    names = [localized(li.name, config.locale) for li in cart.line_items]
    names += [localized(cli.name, config.locale) for cli in cart.custom_line_items]
    categories = [c for li in cart.line_items
                  for c in (lookup.get(li.product_id or "") or ProductInfo()).categories]
    properties: dict[str, Any] = {
        "CartId": cart.id,
        "CheckoutURL": checkout_url(config.checkout_url_template, cart.id),
        "ItemNames": list(dict.fromkeys(n for n in names if n)),
        "Categories": list(dict.fromkeys(categories)),
        "Items": items,
    }
    return {k: v for k, v in properties.items() if v is not None and v != []}


def started_checkout_event(
    cart: Cart, lookup: ProductLookup, config: CheckoutMappingConfig, *,
    customer_email: str | None = None,
) -> KlaviyoEvent | None:
    """The Started Checkout event for the cart's current state; None when it is not one to send
    (see `skip_reason`) or has no email."""
    if skip_reason(cart, config) is not None:
        return None
    profile = checkout_profile(cart, customer_email)
    if profile is None:
        return None
    properties, cut = limit_properties(checkout_properties(cart, lookup, config))
    unique_id = checkout_unique_id(cart)
    if cut:
        log.warning("started checkout properties cut to Klaviyo's limits", ctCartId=cart.id,
                    uniqueId=unique_id, cutCount=cut)
    return KlaviyoEvent(
        metric=config.metric,
        profile=profile,
        properties=properties,
        time=klaviyo_time(cart.last_modified_at or cart.created_at),
        unique_id=unique_id,
        value=money_value(cart.total_price),
        value_currency=cart.total_price.currency_code,
    )
