"""Customer and Address."""

from __future__ import annotations

from shared.commercetools.models.base import CtModel, CustomFields, Timestamp


class Address(CtModel):
    id: str | None = None
    key: str | None = None
    title: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    street_name: str | None = None
    street_number: str | None = None
    additional_street_info: str | None = None
    postal_code: str | None = None
    city: str | None = None
    region: str | None = None
    state: str | None = None
    country: str | None = None
    company: str | None = None
    building: str | None = None
    apartment: str | None = None
    additional_address_info: str | None = None
    phone: str | None = None
    mobile: str | None = None
    email: str | None = None


class Customer(CtModel):
    id: str
    version: int | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    company_name: str | None = None
    addresses: list[Address] = []
    default_billing_address_id: str | None = None
    billing_address_ids: list[str] = []
    custom: CustomFields | None = None
    created_at: Timestamp | None = None
    last_modified_at: Timestamp | None = None
