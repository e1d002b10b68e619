"""Customer sync end to end: real CloudEvents → realtime function → commercetools and Klaviyo
fakes."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from functions_framework import create_app

from shared.config import get_settings
from shared.errors import ConfigError
from shared.log import JsonFormatter
from tests.fakes.commercetools import FakeCommercetools
from tests.fakes.klaviyo import FakeKlaviyo
from tests.realtime import REALTIME_SOURCE, RealtimeFunction

CUSTOMER = {
    "id": "cust-1",
    "version": 1,
    "email": "jane@example.org",
    "firstName": "Jane",
    "lastName": "Doe",
    "title": "Dr",
    "companyName": "Acme Ltd",
    "addresses": [
        {"id": "ship", "streetName": "Other Street", "city": "Leeds", "country": "GB"},
        {
            "id": "bill",
            "apartment": "C",
            "building": "Tall Tower",
            "streetNumber": "23",
            "streetName": "High Road",
            "additionalAddressInfo": "Ring twice",
            "postalCode": "SW1A 1AA",
            "city": "London",
            "region": "Greater London",
            "country": "GB",
            "mobile": "+44 7700 900123",
            "phone": "+44 20 7946 0958",
        },
    ],
    "defaultBillingAddressId": "bill",
    "billingAddressIds": ["bill"],
    "custom": {
        "type": {"typeId": "type", "id": "t-1"},
        "fields": {"loyaltyTier": "gold", "newsletter": False, "points": 0},
    },
}

EXPECTED_PROFILE = {
    "email": "jane@example.org",
    "external_id": "cust-1",
    "first_name": "Jane",
    "last_name": "Doe",
    "title": "Dr",
    "organization": "Acme Ltd",
    "phone_number": "+447700900123",
    "location": {
        "address1": "C, Tall Tower, 23, High Road",
        "address2": "Ring twice",
        "city": "London",
        "country": "GB",
        "region": "Greater London",
        "zip": "SW1A 1AA",
    },
    "properties": {"loyaltyTier": "gold", "newsletter": False, "points": 0},
}


def customer_created(customer: dict[str, Any] = CUSTOMER, **extra: Any) -> dict[str, Any]:
    return {
        "notificationType": "Message",
        "projectKey": "test-project",
        "id": "msg-1",
        "version": 1,
        "sequenceNumber": 1,
        "resource": {"typeId": "customer", "id": customer["id"]},
        "resourceVersion": 1,
        "type": "CustomerCreated",
        "customer": customer,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "lastModifiedAt": "2026-01-01T00:00:00.000Z",
        **extra,
    }


def resource_updated(customer_id: str = "cust-1", version: int = 2) -> dict[str, Any]:
    return {
        "notificationType": "ResourceUpdated",
        "projectKey": "test-project",
        "resource": {"typeId": "customer", "id": customer_id},
        "version": version,
        "oldVersion": version - 1,
        "modifiedAt": "2026-01-02T00:00:00.000Z",
    }


def profile_imports(klaviyo: Any) -> list[Any]:
    return klaviyo.requests_to("POST", "/api/profile-import")


@pytest.mark.parametrize("structured", [False, True], ids=["binary", "structured"])
def test_customer_created_yields_one_profile_upsert(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo, structured: bool
) -> None:
    ct.add("customers", dict(CUSTOMER))

    assert realtime.deliver(customer_created(), structured=structured) == 200

    (request,) = profile_imports(klaviyo)
    assert request.json == {"data": {"type": "profile", "attributes": EXPECTED_PROFILE}}
    assert request.header("authorization") == f"Klaviyo-API-Key {klaviyo.api_key}"
    assert request.header("revision") == get_settings().klaviyo_api_revision
    assert len(klaviyo.profiles) == 1


def test_duplicate_delivery_sends_the_same_upsert_again(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", dict(CUSTOMER))

    assert realtime.deliver(customer_created()) == 200
    assert realtime.deliver(customer_created()) == 200

    first, second = profile_imports(klaviyo)
    assert first.json == second.json
    assert len(klaviyo.profiles) == 1


def test_resource_updated_upserts_the_current_customer(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", {**CUSTOMER, "version": 2, "firstName": "Janet", "companyName": "Beta"})

    assert realtime.deliver(resource_updated()) == 200

    (request,) = profile_imports(klaviyo)
    attributes = request.json["data"]["attributes"]
    assert attributes["first_name"] == "Janet"
    assert attributes["organization"] == "Beta"
    found = klaviyo.find_profile(external_id="cust-1")
    assert found is not None and found["attributes"]["first_name"] == "Janet"


def test_late_created_message_writes_the_current_state(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    """A CustomerCreated that arrives after later changes must not write its stale payload."""
    ct.add("customers", {**CUSTOMER, "version": 5, "lastName": "Smith"})

    assert realtime.deliver(customer_created()) == 200  # payload still says "Doe"

    (request,) = profile_imports(klaviyo)
    assert request.json["data"]["attributes"]["last_name"] == "Smith"


def test_payload_not_included_fetches_the_customer(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", dict(CUSTOMER))
    message = customer_created()
    del message["customer"], message["type"]
    message["payloadNotIncluded"] = {"reason": "Payload too large.",
                                     "payloadType": "CustomerCreated"}

    assert realtime.deliver(message) == 200

    (request,) = profile_imports(klaviyo)
    assert request.json["data"]["attributes"] == EXPECTED_PROFILE


def test_field_message_upserts_the_profile(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", {**CUSTOMER, "title": "Prof"})
    message = customer_created(type="CustomerTitleSet", title="Prof")
    del message["customer"]

    assert realtime.deliver(message) == 200

    (request,) = profile_imports(klaviyo)
    assert request.json["data"]["attributes"]["title"] == "Prof"


def test_existing_profile_with_same_email_is_updated_not_duplicated(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    existing = klaviyo.add_profile(email="jane@example.org", first_name="J")
    ct.add("customers", dict(CUSTOMER))

    assert realtime.deliver(customer_created()) == 200

    assert list(klaviyo.profiles) == [existing]
    assert klaviyo.profiles[existing]["attributes"]["external_id"] == "cust-1"
    assert klaviyo.profiles[existing]["attributes"]["first_name"] == "Jane"


def test_conflicting_identifiers_update_the_duplicate_profile(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    """Email on one profile, external id on another: Klaviyo answers 409 duplicate_profile."""
    by_email = klaviyo.add_profile(email="jane@example.org")
    by_external_id = klaviyo.add_profile(external_id="cust-1", email="old@example.org")
    ct.add("customers", dict(CUSTOMER))

    assert realtime.deliver(customer_created()) == 200

    requests = profile_imports(klaviyo)
    assert [r.status for r in requests] == [409, 409, 200]
    named = requests[-1].json["data"]["id"]
    assert named in (by_email, by_external_id)
    sent = set(requests[-1].json["data"]["attributes"])
    assert not {"email", "external_id", "phone_number"} & sent
    assert klaviyo.profiles[named]["attributes"]["first_name"] == "Jane"
    assert len(klaviyo.profiles) == 2  # nothing duplicated; the merge is left to the merchant


def test_customer_without_email_is_skipped(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", {k: v for k, v in CUSTOMER.items() if k != "email"})

    assert realtime.deliver(customer_created()) == 200

    assert klaviyo.requests == []


def test_deleted_customer_is_not_recreated(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    assert realtime.deliver(resource_updated("gone")) == 200
    assert klaviyo.requests == []


@pytest.mark.parametrize(
    "data",
    [b"not json", b'{"notificationType": "Message"}', b"[]", b'{"resource": 1}'],
    ids=["not-json", "no-resource", "array", "bad-resource"],
)
def test_malformed_message_is_acknowledged(
    realtime: RealtimeFunction, klaviyo: FakeKlaviyo, data: bytes
) -> None:
    assert realtime.deliver_bytes(data) == 200
    assert klaviyo.requests == []


def test_subscription_test_message_is_acknowledged(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    test_message = {
        "notificationType": "ResourceCreated",
        "projectKey": "test-project",
        "resource": {"typeId": "subscription", "id": "sub-1"},
        "resourceUserProvidedIdentifiers": {"key": "klaviyo-connector"},
        "version": 1,
        "modifiedAt": "2026-01-01T00:00:00.000Z",
    }
    assert realtime.deliver(test_message) == 200
    assert klaviyo.requests == [] and ct.api_requests() == []


def test_429_is_retried_after_retry_after(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", dict(CUSTOMER))
    klaviyo.inject(429, path="/api/profile-import", retry_after=1)

    assert realtime.deliver(customer_created()) == 200

    assert [r.status for r in profile_imports(klaviyo)] == [429, 201]


def test_server_error_past_the_deadline_fails_the_invocation(
    make_realtime: Callable[..., RealtimeFunction], ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", dict(CUSTOMER))
    realtime = make_realtime(REALTIME_DEADLINE_SECONDS="1.5")
    klaviyo.inject(500, times=1000, path="/api/profile-import")

    assert realtime.deliver(customer_created()) == 500  # Pub/Sub will redeliver

    assert len(profile_imports(klaviyo)) >= 2
    assert klaviyo.profiles == {}


def test_commercetools_outage_fails_the_invocation(
    make_realtime: Callable[..., RealtimeFunction], ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", dict(CUSTOMER))
    realtime = make_realtime(REALTIME_DEADLINE_SECONDS="1.5")
    ct.inject(503, times=None, path="/test-project/customers")

    assert realtime.deliver(customer_created()) == 500
    assert klaviyo.requests == []


def test_definite_client_error_is_acknowledged(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", dict(CUSTOMER))
    klaviyo.inject(422, path="/api/profile-import")

    assert realtime.deliver(customer_created()) == 200
    assert len(profile_imports(klaviyo)) == 1


def test_disabled_processor_sends_nothing(
    make_realtime: Callable[..., RealtimeFunction], ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", dict(CUSTOMER))
    realtime = make_realtime(DISABLED_PROCESSORS="CustomerCreated")

    assert realtime.deliver(customer_created()) == 200
    assert klaviyo.requests == []


def test_unknown_disabled_processor_fails_at_start(
    make_realtime: Callable[..., RealtimeFunction]
) -> None:
    with pytest.raises(ConfigError, match="DISABLED_PROCESSORS.*OrderStateChangedd"):
        make_realtime(DISABLED_PROCESSORS="OrderStateChangedd")


def test_missing_setting_fails_at_start_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CTP_PROJECT_KEY", "CTP_CLIENT_ID", "CTP_CLIENT_SECRET", "CTP_API_URL",
                 "CTP_AUTH_URL", "KLAVIYO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CTP_CLIENT_ID", "id")
    get_settings.cache_clear()
    with pytest.raises(ConfigError) as info:
        create_app("handle_ct_message", REALTIME_SOURCE)
    message = str(info.value)
    assert "\n" not in message
    assert "KLAVIYO_API_KEY (missing)" in message and "CTP_CLIENT_ID" not in message
    get_settings.cache_clear()


def test_logs_are_json_without_pii(
    realtime: RealtimeFunction,
    ct: FakeCommercetools,
    klaviyo: FakeKlaviyo,
    caplog: pytest.LogCaptureFixture
) -> None:
    ct.add("customers", dict(CUSTOMER))
    klaviyo.inject(429, path="/api/profile-import", retry_after=0)
    caplog.set_level(logging.DEBUG, logger="connector")

    assert realtime.deliver(customer_created()) == 200
    assert realtime.deliver_bytes(b"garbage") == 200

    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records
             if r.name.startswith("connector")]
    assert any(line["message"] == "processed" and line["ctMessageId"] == "msg-1" for line in lines)
    assert all(line["severity"] in {"DEBUG", "INFO", "WARNING", "ERROR"} for line in lines)
    text = json.dumps(lines)
    for pii in ("jane@example.org", "Jane", "Doe", "High Road", "7700", "London"):
        assert pii not in text
