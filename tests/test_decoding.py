"""Pub/Sub CloudEvent data → commercetools delivery, including everything that must be rejected."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from shared.commercetools.messages import parse_ct_message
from shared.errors import MessageError
from shared.processors.dispatch import decode


def envelope(data: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"messageId": "m-1", "attributes": {}}
    if data is not None:
        message["data"] = data
    return {"message": message, "subscription": "projects/p/subscriptions/s"}


def b64(payload: Any) -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return base64.b64encode(raw).decode()


CUSTOMER_CREATED = {
    "notificationType": "Message",
    "projectKey": "shop",
    "id": "msg-1",
    "version": 1,
    "sequenceNumber": 1,
    "resource": {"typeId": "customer", "id": "cust-1"},
    "resourceVersion": 1,
    "type": "CustomerCreated",
    "customer": {"id": "cust-1", "email": "jane@example.org"},
    "createdAt": "2026-01-01T00:00:00.000Z",
    "lastModifiedAt": "2026-01-01T00:00:00.000Z",
}


def test_platform_message() -> None:
    message = decode(envelope(b64(CUSTOMER_CREATED)))
    assert (message.notification_type, message.message_type) == ("Message", "CustomerCreated")
    assert message.resource.id == "cust-1"
    assert message.payload["customer"]["id"] == "cust-1"
    assert message.sequence_number == 1


def test_change_notification() -> None:
    message = decode(
        envelope(
            b64(
                {
                    "notificationType": "ResourceUpdated",
                    "projectKey": "shop",
                    "resource": {"typeId": "customer", "id": "cust-1"},
                    "version": 3,
                    "oldVersion": 2,
                    "modifiedAt": "2026-01-01T00:00:00.000Z",
                }
            )
        )
    )
    assert message.message_type == "ResourceUpdated"
    assert message.log_id == "cust-1@3"


def test_payload_not_included_names_the_type() -> None:
    body = {k: v for k, v in CUSTOMER_CREATED.items() if k not in ("type", "customer")}
    body["payloadNotIncluded"] = {"reason": "Payload too large.", "payloadType": "CustomerCreated"}
    message = decode(envelope(b64(body)))
    assert message.message_type == "CustomerCreated"
    assert message.payload_not_included is not None


def test_cloudevents_format_delivery_is_unwrapped() -> None:
    wrapped = {
        "specversion": "1.0",
        "id": "msg-1",
        "type": "com.commercetools.customer.message.CustomerCreated",
        "source": "/shop/customers",
        "data": CUSTOMER_CREATED,
    }
    assert decode(envelope(b64(wrapped))).message_type == "CustomerCreated"


def test_subscription_test_message() -> None:
    test_message = {
        "notificationType": "ResourceCreated",
        "projectKey": "shop",
        "resource": {"typeId": "subscription", "id": "sub-1"},
        "version": 1,
        "modifiedAt": "2026-01-01T00:00:00.000Z",
    }
    assert decode(envelope(b64(test_message))).is_subscription_test


@pytest.mark.parametrize(
    ("event_data", "reason"),
    [
        (None, "no Pub/Sub `message`"),
        ({"message": "x"}, "no Pub/Sub `message`"),
        (envelope(None), "no `data`"),
        (envelope("!!!not base64!!!"), "not valid base64"),
        (envelope(b64(b"\xff\xfe")), "not JSON"),
        (envelope(b64(b"{not json")), "not JSON"),
        (envelope(b64([1, 2])), "not a JSON object"),
        (envelope(b64({"notificationType": "Message"})), "resource"),
        (envelope(b64({**CUSTOMER_CREATED, "notificationType": "Bogus"})), "notificationType"),
        (envelope(b64({**CUSTOMER_CREATED, "resource": {"typeId": "customer"}})), "resource.id"),
    ],
)
def test_undecodable_data_raises_message_error(event_data: Any, reason: str) -> None:
    with pytest.raises(MessageError, match=reason.replace("(", r"\(")):
        decode(event_data)


def test_message_error_never_echoes_values() -> None:
    with pytest.raises(MessageError) as info:
        parse_ct_message({"notificationType": "jane@example.org", "resource": {}})
    assert "jane@example.org" not in str(info.value)
