"""Pydantic models of the commercetools resources the mappers read (the typed boundary).

Only the fields we map are declared; everything else commercetools sends is ignored, so a new CT
field never breaks parsing. Field names are snake_case in Python, camelCase on the wire.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CtModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class Reference(CtModel):
    type_id: str
    id: str
    obj: dict[str, Any] | None = None


class CustomFields(CtModel):
    fields: dict[str, Any] = {}


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
    created_at: str | None = None
    last_modified_at: str | None = None
