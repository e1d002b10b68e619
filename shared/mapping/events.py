"""A Klaviyo event, independent of how it is sent (one POST /api/events, or a bulk job entry)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class KlaviyoEvent:
    metric: str
    profile: dict[str, Any]  # profile attributes identifying the person (email, external_id, …)
    properties: dict[str, Any]
    time: str
    unique_id: str  # deterministic, so a redelivery is deduplicated by Klaviyo
    value: float | None = None
    value_currency: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other event attributes, e.g. backfill

    def event_attributes(self) -> dict[str, Any]:
        """The event's own attributes (without the profile), as in a bulk job's `events`."""
        attributes: dict[str, Any] = {
            "properties": self.properties,
            "time": self.time,
            "unique_id": self.unique_id,
            "metric": {"data": {"type": "metric", "attributes": {"name": self.metric}}},
        }
        if self.value is not None:
            attributes["value"] = self.value
        if self.value_currency:
            attributes["value_currency"] = self.value_currency
        attributes.update(self.extra)
        return attributes

    def attributes(self) -> dict[str, Any]:
        """`data.attributes` of POST /api/events."""
        return {
            **self.event_attributes(),
            "profile": {"data": {"type": "profile", "attributes": self.profile}},
        }
