"""Events: create one (and its profile), dedup by (profile, metric, unique_id or time)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.klaviyo.errors import _invalid
from tests.fakes.klaviyo.state import EVENT_ATTRIBUTES, MATCHED_IDENTIFIERS, _new_id, _now

if TYPE_CHECKING:
    from tests.fakes.klaviyo.base import FakeApi
else:
    FakeApi = object  # the type checker's view of the sibling families; nothing at run time


class Events(FakeApi):
    """Mixin of FakeKlaviyo: state `events` (one record per distinct event)."""

    events: list[dict[str, Any]]
    _event_keys: set[tuple[Any, ...]]
    profiles: dict[str, dict[str, Any]]


    @staticmethod
    def _validate_event(attrs: Any, base: str, allowed: frozenset[str]) -> str:
        if not isinstance(attrs, dict):
            raise _invalid(base, "Event attributes must be an object.")
        for key in attrs:
            if key not in allowed:
                raise _invalid(f"{base}/{key}",
                               f"'{key}' is not a valid field for the resource 'event'.")
        if not isinstance(attrs.get("properties"), dict):
            raise _invalid(f"{base}/properties", "properties is required and must be an object.")
        metric = attrs.get("metric")
        name = None
        if isinstance(metric, dict) and isinstance(metric.get("data"), dict):
            name = (metric["data"].get("attributes") or {}).get("name")
        if not isinstance(name, str) or not name or len(name) >= 128:
            raise _invalid(f"{base}/metric/data/attributes/name",
                           "A metric name (shorter than 128 characters) is required.")
        unique_id = attrs.get("unique_id")
        if unique_id is not None and (not isinstance(unique_id, str) or not 1 <= len(unique_id)
                                      <= 255):
            raise _invalid(f"{base}/unique_id", "unique_id must be 1-255 characters.")
        return name

    def _validate_event_profile(self, profile: Any, base: str) -> dict[str, Any]:
        data = profile.get("data") if isinstance(profile, dict) else None
        if not isinstance(data, dict):
            raise _invalid(base, "A profile is required.")
        attrs = data.get("attributes") or {}
        self._validate_profile(attrs, f"{base}/data/attributes")
        if not data.get("id") and not self._has_identifier(attrs):
            raise _invalid(f"{base}/data/attributes",
                           "The profile needs at least one identifier.")
        if data.get("id") and data["id"] not in self.profiles:
            raise _invalid(f"{base}/data/id", "Unknown profile id.")
        return data

    def _resolve_event_profile(self, data: dict[str, Any]) -> str:
        """Events create or update their profile; identifiers owned elsewhere are left alone."""
        attrs = dict(data.get("attributes") or {})
        pid = data.get("id") or next(iter(self._matches(attrs)), None)
        if pid is None:
            return self._create_profile(attrs)["id"]
        for name in MATCHED_IDENTIFIERS:
            other = self._find_by_identifier(name, attrs.get(name))
            if other and other != pid:
                attrs.pop(name)
        self._apply_profile(self.profiles[pid], attrs)
        return pid

    def _store_event(self, pid: str, metric: str, attrs: dict[str, Any]) -> bool:
        when = str(attrs.get("time") or _now())
        unique = attrs.get("unique_id")
        key = (pid, metric, ("unique_id", unique) if unique else ("time", when[:19]))
        if key in self._event_keys:
            return False
        self._event_keys.add(key)
        self.events.append({
            "id": _new_id(), "profile_id": pid, "metric": metric, "unique_id": unique,
            "time": when, "properties": attrs.get("properties"), "value": attrs.get("value"),
            "value_currency": attrs.get("value_currency"), "backfill": attrs.get("backfill"),
            "attributes": attrs,
        })
        return True

    def _create_event(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != "event":
            raise _invalid("/data/type", "The resource type must be 'event'.")
        attrs = data.get("attributes")
        metric = self._validate_event(attrs, "/data/attributes", EVENT_ATTRIBUTES)
        assert isinstance(attrs, dict)  # _validate_event refused anything else
        profile = self._validate_event_profile(attrs.get("profile"), "/data/attributes/profile")
        pid = self._resolve_event_profile(profile)
        event_attrs = {k: v for k, v in attrs.items() if k != "profile"}
        self._store_event(pid, metric, event_attrs)
        return 202, None, {}
