"""A Klaviyo event, independent of how it is sent (one POST /api/events, or a bulk job entry)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.mapping.common import format_time, parse_time

# Klaviyo accepts an event time "after the year 1990 and up to 1 year in the future" (OpenAPI,
# EventCreateQueryV2 `time`), and one event outside that range makes it refuse a whole bulk
# request of up to 1,000. Such a time is one record's data problem (an imported order dated
# 1970, a clock set wrong) and the event is still worth having, so its time is clamped into the
# range (both readings of "after the year 1990" hold; a day's margin for clock skew ahead).
EARLIEST_EVENT_TIME = datetime(1991, 1, 1, tzinfo=UTC)
LATEST_EVENT_AHEAD = timedelta(days=364)


def accepted_time(time: str, now: datetime | None = None) -> str:
    """`time` (ISO 8601), clamped into the range Klaviyo accepts; unparsable text unchanged."""
    try:
        parsed = parse_time(time)
    except ValueError:
        return time
    if parsed < EARLIEST_EVENT_TIME:
        clamped = EARLIEST_EVENT_TIME
    else:
        latest = (now or datetime.now(UTC)) + LATEST_EVENT_AHEAD
        if parsed <= latest:
            return time
        clamped = latest
    return format_time(clamped)


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
            "time": accepted_time(self.time),
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


def bulk_entries(events: Iterable[KlaviyoEvent]) -> list[dict[str, Any]]:
    """The events as `KlaviyoClient.create_event_bulk_job` entries: grouped per profile (in order
    of first appearance, events in their order), `{"profile": ..., "events": [event_attributes()]}`.

    Each event keeps its own attributes (unique_id, time, `extra`), so a bulk request records
    exactly what one POST /api/events per event would. Events whose profile attributes differ
    (the Placed Order carries the billing location, the others do not) go in separate entries.
    """
    entries: dict[str, dict[str, Any]] = {}
    for event in events:
        # The mapper builds a person's profile the same way every time: its repr is a cheap key.
        key = repr(event.profile)
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = {"profile": event.profile, "events": []}
        entry["events"].append(event.event_attributes())
    return list(entries.values())
