"""Table tests of the customer → profile mapping (seed table, address priority, phone, custom
fields)."""

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
SHIPPING = {"id": "addr-ship", "streetName": "Other Street", "city": "Leeds", "country": "GB",
            "phone": "+441132496000"}


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
        # mobile without country code: unusable
        ("07700 900123", "+1 415 555 0100", "+14155550100"),
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


# ---- issue 15: renames, US state, empty strings, E.164 bounds ----------------------------------


@pytest.mark.parametrize(("rename", "include", "exclude", "properties"), [
    ({"loyalty": "Loyalty Tier"}, (), (), {"Loyalty Tier": "gold", "points": 0}),
    ({"loyalty": "Loyalty Tier"}, ("loyalty",), (), {"Loyalty Tier": "gold"}),
    # include/exclude name the commercetools field, not the Klaviyo name
    ({"loyalty": "Loyalty Tier"}, (), ("loyalty",), {"points": 0}),
    ({"loyalty": "Loyalty Tier"}, (), ("Loyalty Tier",), {"Loyalty Tier": "gold", "points": 0}),
    ({}, (), (), {"loyalty": "gold", "points": 0}),
    ({"other": "X"}, (), (), {"loyalty": "gold", "points": 0}),
])
def test_custom_field_renames(rename: dict[str, str], include: tuple[str, ...],
                              exclude: tuple[str, ...], properties: dict[str, Any]) -> None:
    fields = {"loyalty": "gold", "points": 0}
    profile = map_profile(customer(custom={"fields": fields}), include=include, exclude=exclude,
                          rename=rename)
    assert profile["properties"] == properties


def test_customer_rename_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.config import load_settings
    from shared.errors import ConfigError

    for name, value in {"CTP_PROJECT_KEY": "p", "CTP_CLIENT_ID": "c", "CTP_CLIENT_SECRET": "s",
                        "CTP_API_URL": "https://a.example", "CTP_AUTH_URL": "https://b.example",
                        "KLAVIYO_API_KEY": "k",
                        "CUSTOMER_PROPERTIES_RENAME": '{"loyalty": "Tier"}'}.items():
        monkeypatch.setenv(name, value)
    assert load_settings().customer_properties_rename == {"loyalty": "Tier"}
    monkeypatch.setenv("CUSTOMER_PROPERTIES_RENAME", "")
    assert load_settings().customer_properties_rename == {}
    monkeypatch.setenv("CUSTOMER_PROPERTIES_RENAME", '["loyalty"]')
    with pytest.raises(ConfigError, match="CUSTOMER_PROPERTIES_RENAME"):
        load_settings()


@pytest.mark.parametrize(("address", "region"), [
    ({"country": "US", "state": "CA"}, "CA"),
    ({"country": "US", "state": "CA", "region": "California"}, "California"),
    ({"country": "US"}, None),
    ({"country": "CA", "state": "QC"}, None),  # only a US address's state
    ({"state": "CA"}, None),
    ({"country": "US", "state": "", "region": ""}, None),
])
def test_us_state_becomes_the_region(address: dict[str, Any], region: str | None) -> None:
    profile = map_profile(customer(addresses=[{"id": "a", **address}],
                                   defaultBillingAddressId="a"))
    assert profile.get("location", {}).get("region") == region


def test_empty_string_customer_fields_are_left_out() -> None:
    profile = map_profile(customer(firstName="", lastName="", title="", companyName="",
                                   addresses=[{"id": "a", "city": "", "country": "GB",
                                               "streetName": "", "mobile": "", "phone": ""}],
                                   defaultBillingAddressId="a"))
    assert profile == {"email": "jane@example.org", "external_id": "cust-1",
                       "location": {"country": "GB"}, "properties": {"loyalty": "gold"}}


@pytest.mark.parametrize(("raw", "expected"), [
    ("+1234567", "+1234567"),                 # 7 digits: the shortest accepted
    ("+123456", None),                        # 6
    ("+123456789012345", "+123456789012345"),  # 15 digits: E.164's longest
    ("+1234567890123456", None),              # 16
    ("0049 30 1234567", "+49301234567"),
])
def test_e164_length_bounds(raw: str, expected: str | None) -> None:
    assert normalize_phone(raw) == expected
