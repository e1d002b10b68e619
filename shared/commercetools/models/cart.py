"""Cart: what the Started Checkout event reads.

Cart line items are the same commercetools types as an order's (LineItem, CustomLineItem), so they
are reused from `models.order`: the Items[] builder (`mapping.line_items`) works for both.
"""

from __future__ import annotations

from shared.commercetools.models.base import CtModel, CustomFields, Money, Timestamp
from shared.commercetools.models.customer import Address
from shared.commercetools.models.order import CustomLineItem, LineItem


class Cart(CtModel):
    id: str
    version: int | None = None
    key: str | None = None
    customer_id: str | None = None
    customer_email: str | None = None
    anonymous_id: str | None = None
    # Active | Merged | Ordered | Frozen. Optional here so a future state never breaks parsing.
    cart_state: str | None = None
    line_items: list[LineItem] = []
    custom_line_items: list[CustomLineItem] = []
    total_price: Money
    shipping_address: Address | None = None
    custom: CustomFields | None = None
    locale: str | None = None
    created_at: Timestamp
    last_modified_at: Timestamp | None = None
