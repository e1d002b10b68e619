"""Decoding of Pub/Sub CloudEvents (`google.cloud.pubsub.topic.v1.messagePublished`)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from shared import jsontext
from shared.errors import MessageError

# Well above any realistic commercetools payload (CT caps documents at 16 MB and Pub/Sub
# messages at 10 MB), and small enough that a runaway message cannot exhaust memory.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class PubsubMessage:
    message_id: str | None
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    delivery_attempt: int | None = None

    def json(self) -> Any:
        try:
            return jsontext.loads(self.data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MessageError(f"message data is not JSON: {type(exc).__name__}") from None


def decode_pubsub_event(event_data: Any) -> PubsubMessage:
    """The Pub/Sub message inside a CloudEvent's data: `{"message": {"data": <base64>, ...}}`."""
    if not isinstance(event_data, dict) or not isinstance(event_data.get("message"), dict):
        raise MessageError("CloudEvent data has no Pub/Sub `message` object")
    message = event_data["message"]
    encoded = message.get("data")
    if not isinstance(encoded, str) or not encoded:
        raise MessageError("Pub/Sub message has no `data`")
    if len(encoded) > MAX_MESSAGE_BYTES * 4 // 3 + 4:
        raise MessageError(f"Pub/Sub message data is larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise MessageError("Pub/Sub message data is not valid base64") from None
    attributes = message.get("attributes") or {}
    attempt = event_data.get("deliveryAttempt") or message.get("deliveryAttempt")
    return PubsubMessage(
        message_id=message.get("messageId") or message.get("message_id"),
        data=data,
        attributes=attributes if isinstance(attributes, dict) else {},
        delivery_attempt=attempt if isinstance(attempt, int) else None,
    )
