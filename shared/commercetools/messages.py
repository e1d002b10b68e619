"""commercetools subscription deliveries in the Platform format (and CloudEvents-wrapped ones)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationError

from shared.commercetools.models.base import CtModel, Timestamp
from shared.errors import MessageError

NotificationType = Literal["Message", "ResourceCreated", "ResourceUpdated", "ResourceDeleted"]


class ResourceRef(CtModel):
    type_id: str
    id: str


class PayloadNotIncluded(CtModel):
    reason: str | None = None
    payload_type: str | None = None


class CtMessage(CtModel):
    """One delivery. Message-specific fields (e.g. `customer`, `order`) stay in `payload`."""

    notification_type: NotificationType
    project_key: str | None = None
    resource: ResourceRef
    id: str | None = None  # Message id (message subscriptions only)
    type: str | None = None  # Message type, e.g. CustomerCreated (message subscriptions only)
    sequence_number: int | None = None
    resource_version: int | None = None
    version: int | None = None
    modified_at: Timestamp | None = None
    created_at: Timestamp | None = None
    payload_not_included: PayloadNotIncluded | None = None
    resource_user_provided_identifiers: dict[str, Any] | None = None
    payload: dict[str, Any] = {}

    @property
    def message_type(self) -> str:
        """The Message type, or the notification type for change deliveries.

        With `payloadNotIncluded` commercetools may leave `type` out; `payloadType` names it.
        """
        if self.notification_type != "Message":
            return self.notification_type
        if self.type:
            return self.type
        if self.payload_not_included and self.payload_not_included.payload_type:
            return self.payload_not_included.payload_type
        return "Message"

    @property
    def is_subscription_test(self) -> bool:
        """commercetools sends one such delivery when a subscription is created."""
        return self.resource.type_id == "subscription"

    @property
    def log_id(self) -> str:
        return self.id or f"{self.resource.id}@{self.version}"


def parse_ct_message(data: Any) -> CtMessage:
    """Validate a decoded delivery; CloudEvents-format deliveries are unwrapped first."""
    if isinstance(data, dict) and "specversion" in data and isinstance(data.get("data"), dict):
        data = data["data"]
    if not isinstance(data, dict):
        raise MessageError("commercetools delivery is not a JSON object")
    try:
        message = CtMessage.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
        raise MessageError(
            f"not a commercetools delivery: bad or missing {', '.join(fields)}"
        ) from None
    return message.model_copy(update={"payload": data})
