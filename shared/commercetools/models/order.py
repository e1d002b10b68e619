"""Order and the parts of it the order events map (line items, discounts, shipping, addresses)."""

from __future__ import annotations

from typing import Any

from pydantic import PrivateAttr, model_validator

from shared.commercetools.models.base import (
    CtModel,
    CustomFields,
    LocalizedString,
    Money,
    Reference,
    Timestamp,
)
from shared.commercetools.models.customer import Address
from shared.commercetools.models.product import Attribute


class Image(CtModel):
    url: str


class ProductVariant(CtModel):
    id: int | None = None
    sku: str | None = None
    key: str | None = None
    images: list[Image] = []
    attributes: list[Attribute] = []


class DiscountedPriceValue(CtModel):
    """Price.discounted: the product-discounted (sale) unit price."""

    value: Money


class Price(CtModel):
    value: Money
    discounted: DiscountedPriceValue | None = None


class DiscountedPortion(CtModel):
    """What one cart discount took off (per unit for line items, in total for shipping)."""

    discount: Reference | None = None
    discounted_amount: Money


class DiscountedLineItemPrice(CtModel):
    value: Money
    included_discounts: list[DiscountedPortion] = []


class DiscountedPricePerQuantity(CtModel):
    quantity: int
    discounted_price: DiscountedLineItemPrice


class LineItem(CtModel):
    id: str
    product_id: str | None = None
    product_key: str | None = None
    name: LocalizedString = {}
    product_slug: LocalizedString | None = None
    variant: ProductVariant | None = None
    price: Price | None = None
    total_price: Money | None = None
    quantity: int = 1
    discounted_price_per_quantity: list[DiscountedPricePerQuantity] = []


class CustomLineItem(CtModel):
    id: str
    name: LocalizedString = {}
    slug: str | None = None
    money: Money | None = None
    total_price: Money | None = None
    quantity: int = 1
    discounted_price_per_quantity: list[DiscountedPricePerQuantity] = []


class ShippingInfo(CtModel):
    shipping_method_name: str | None = None
    price: Money | None = None
    discounted_price: DiscountedLineItemPrice | None = None


class Shipping(CtModel):
    """One entry of `shipping` (Multiple shipping mode)."""

    shipping_key: str | None = None
    shipping_info: ShippingInfo | None = None


class DiscountOnTotalPrice(CtModel):
    discounted_amount: Money


class DiscountCodeInfo(CtModel):
    discount_code: Reference
    state: str | None = None


class TaxedPrice(CtModel):
    total_net: Money | None = None
    total_gross: Money | None = None
    total_tax: Money | None = None


class PaymentInfo(CtModel):
    payments: list[Reference] = []


class Order(CtModel):
    id: str
    version: int | None = None
    order_number: str | None = None
    customer_id: str | None = None
    customer_email: str | None = None
    created_at: Timestamp
    last_modified_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    order_state: str | None = None
    shipment_state: str | None = None
    payment_state: str | None = None
    total_price: Money
    taxed_price: TaxedPrice | None = None
    line_items: list[LineItem] = []
    custom_line_items: list[CustomLineItem] = []
    shipping_info: ShippingInfo | None = None
    shipping: list[Shipping] = []
    discount_codes: list[DiscountCodeInfo] = []
    discount_on_total_price: DiscountOnTotalPrice | None = None
    billing_address: Address | None = None
    shipping_address: Address | None = None
    payment_info: PaymentInfo | None = None
    custom: CustomFields | None = None

    # The document as commercetools sent it: operators may select any top-level field as an
    # event property (ORDER_PROPERTIES_INCLUDE), including ones this model does not declare.
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_raw(cls, data: Any, handler: Any) -> Order:
        order = handler(data)
        if isinstance(data, dict):
            order._raw = data
        return order

    @property
    def raw(self) -> dict[str, Any]:
        return self._raw
