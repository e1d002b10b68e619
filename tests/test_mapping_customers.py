"""Table tests of the customer → profile mapping (seed table, address priority, phone, custom fields)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.commercetools.models.customer import Customer
from shared.mapping.customers import map_profile, normalize_phone, select_address

BILLING = {
    "id": "addr-bill",
    "apartment": "C",
    "building": "Tall Tower",
    "streetNumber": "23",
    "streetName": "High Road",
    "additionalStreetInfo": "Floor 3",
    "additionalAddressInfo": "Ring twice",
    "postalCode": "SW1A 1AA",
    "city": "London",
    "region": "Greater London",
    "state": "ignored-state",
    "country": "GB",
    "mobile": "+44 7700 900123",
    "phone": "+44 20 7946 0958",
}
SHIPPING = {"id": "addr-ship", "streetName": "Other Street", "city": "Leeds", "country": "GB", "phone": "+441132496000"}


def customer(**overrides: Any) -> Customer:
    base: dict[str, Any] = {
        "id": "cust-1",
        "version": 3,
        "email": "jane@example.org",
        "firstName": "Jane",
        "lastName": "Doe",
        "title": "Dr",
        "companyName": "Acme Ltd",
        "addresses": [SHIPPING, BILLING],
        "defaultBillingAddressId": "addr-bill",
        "billingAddressIds": ["addr-bill"],
        "custom": {"type": {"typeId": "type", "id": "t1"}, "fields": {"loyalty": "gold"}},
    }
    base.update(overrides)
    return Customer.model_validate(base)


def test_every_seed_row_is_mapped() -> None:
    assert map_profile(customer()) == {
        "email": "jane@example.org",
        "external_id": "cust-1",
        "first_name": "Jane",
        "last_name": "Doe",
        "title": "Dr",
        "organization": "Acme Ltd",
        "phone_number": "+447700900123",
        "location": {
            "address1": "C, Tall Tower, 23, High Road",
            "address2": "Floor 3, Ring twice",
            "city": "London",
            "country": "GB",
            "region": "Greater London",
            "zip": "SW1A 1AA",
        },
        "properties": {"loyalty": "gold"},
    }


@pytest.mark.parametrize(
    ("overrides", "expected_address"),
    [
        ({}, "addr-bill"),  # default billing address wins
        ({"defaultBillingAddressId": None}, "addr-bill"),  # then the first billing address
        ({"defaultBillingAddressId": None, "billingAddressIds": []}, "addr-ship"),  # then the first
        ({"defaultBillingAddressId": "missing", "billingAddressIds": ["addr-bill"]}, "addr-bill"),
        ({"addresses": []}, None),
    ],
)
def test_address_priority(overrides: dict[str, Any], expected_address: str | None) -> None:
    selected = select_address(customer(**overrides))
    assert (selected.id if selected else None) == expected_address


@pytest.mark.parametrize(
    ("mobile", "phone", "expected"),
    [
        ("+44 7700 900123", "+44 20 7946 0958", "+447700900123"),  # mobile first
        (None, "+44 (20) 7946-0958", "+442079460958"),  # else phone, punctuation removed
        ("", "0044 20 7946 0958", "+442079460958"),  # 00 prefix → +
        ("07700 900123", "+1 415 555 0100", "+14155550100"),  # mobile without country code: unusable
        ("07700 900123", None, None),  # nothing valid: no phone sent (Klaviyo needs E.164)
        (None, None, None),
    ],
)
def test_phone_choice(mobile: str | None, phone: str | None, expected: str | None) -> None:
    address = {"id": "a", "country": "GB", "mobile": mobile, "phone": phone}
    profile = map_profile(customer(addresses=[address], defaultBillingAddressId="a"))
    assert profile.get("phone_number") == expected


def test_custom_fields_keep_false_zero_and_empty_string() -> None:
    fields = {"optIn": False, "points": 0, "nickname": "", "tags": ["a"], "gone": None}
    profile = map_profile(customer(custom={"fields": fields}))
    assert profile["properties"] == {"optIn": False, "points": 0, "nickname": "", "tags": ["a"]}


def test_custom_fields_include_and_exclude() -> None:
    fields = {"a": 1, "b": 2, "c": 3}
    assert map_profile(customer(custom={"fields": fields}), include=["a", "b"], exclude=["b"])[
        "properties"
    ] == {"a": 1}


def test_absent_fields_are_omitted_not_nulled() -> None:
    minimal = Customer.model_validate({"id": "c2", "email": "x@example.org"})
    assert map_profile(minimal) == {"email": "x@example.org", "external_id": "c2"}


def test_address_without_street_parts_has_no_empty_lines() -> None:
    address = {"id": "a", "city": "Paris", "country": "FR"}
    profile = map_profile(customer(addresses=[address], defaultBillingAddressId="a"))
    assert profile["location"] == {"city": "Paris", "country": "FR"}
    assert "phone_number" not in profile


@pytest.mark.parametrize("raw", ["+1", "abc", "+0123456789", ""])
def test_normalize_phone_rejects_garbage(raw: str) -> None:
    assert normalize_phone(raw) is None
