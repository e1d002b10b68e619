"""commercetools Customer → Klaviyo profile attributes (seed mapping table)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.commercetools.models.customer import Address, Customer

if TYPE_CHECKING:
    from shared.config import Settings

_PHONE_PUNCTUATION = re.compile(r"[\s\-./()]")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class ProfileMappingConfig:
    """The settings the profile mapping reads (CUSTOMER_PROPERTIES_INCLUDE / _EXCLUDE / _RENAME):
    the keyword arguments of `map_profile`."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    rename: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProfileMappingConfig:
        return cls(include=tuple(settings.customer_properties_include),
                   exclude=tuple(settings.customer_properties_exclude),
                   rename=dict(settings.customer_properties_rename))


def select_address(customer: Customer) -> Address | None:
    """Default billing address, else the first billing address, else the first address."""
    by_id = {a.id: a for a in customer.addresses if a.id}
    if customer.default_billing_address_id and customer.default_billing_address_id in by_id:
        return by_id[customer.default_billing_address_id]
    for billing_id in customer.billing_address_ids:
        if billing_id in by_id:
            return by_id[billing_id]
    return customer.addresses[0] if customer.addresses else None


def normalize_phone(raw: str | None) -> str | None:
    """E.164 or nothing: Klaviyo rejects the whole profile for a malformed phone number.

    Only punctuation is removed and a `00` international prefix becomes `+`; a number without a
    country code cannot be fixed without guessing, so it is dropped rather than sent.
    """
    if not raw:
        return None
    phone = _PHONE_PUNCTUATION.sub("", raw)
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    return phone if _E164.match(phone) else None


def _join(*parts: str | None) -> str:
    return ", ".join(p for p in parts if p)


def address_region(address: Address) -> str | None:
    """`region`, else for a US address its `state` (where commercetools keeps a US state)."""
    if address.region:
        return address.region
    if address.state and (address.country or "").upper() == "US":
        return address.state
    return None


def map_location(address: Address) -> dict[str, str]:
    location = {
        "address1": _join(
            address.apartment, address.building, address.street_number, address.street_name
        ),
        "address2": _join(address.additional_street_info, address.additional_address_info),
        "city": address.city,
        "country": address.country,
        "region": address_region(address),
        "zip": address.postal_code,
    }
    return {key: value for key, value in location.items() if value}


def select_properties(
    fields: dict[str, Any], include: Collection[str] = (), exclude: Collection[str] = (),
    rename: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Custom fields to send as profile properties, renamed by `rename`
    (CUSTOMER_PROPERTIES_RENAME; include/exclude name the commercetools fields). Falsy values
    (`False`, `0`, `""`) are kept: dropping them, as the reference plugin does, leaves stale
    values in Klaviyo."""
    rename = rename or {}
    return {
        rename.get(name, name): value
        for name, value in fields.items()
        if (not include or name in include) and name not in exclude and value is not None
    }


def map_profile(
    customer: Customer, *, include: Collection[str] = (), exclude: Collection[str] = (),
    rename: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Klaviyo profile attributes for a customer (profile-import body `data.attributes`).

    Fields commercetools does not have are omitted rather than sent as null, so data Klaviyo
    collected from other sources (sign-up forms, other integrations) is not wiped.
    """
    attributes: dict[str, Any] = {
        "email": customer.email,
        "external_id": customer.id,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "title": customer.title,
        "organization": customer.company_name,
    }
    address = select_address(customer)
    if address is not None:
        attributes["phone_number"] = normalize_phone(address.mobile) or normalize_phone(
            address.phone
        )
        location = map_location(address)
        if location:
            attributes["location"] = location
    if customer.custom and customer.custom.fields:
        properties = select_properties(customer.custom.fields, include, exclude, rename)
        if properties:
            attributes["properties"] = properties
    return {key: value for key, value in attributes.items() if value is not None and value != ""}
