"""Our thin Klaviyo client on `requests`: profiles and events here; catalog, bulk jobs and privacy
(consent, deletion) in mixins over one transport (`transport.KlaviyoTransport`).

Every public method takes `deadline`, so retries (429 honouring Retry-After, 5xx, transport
errors) stop in time for the Cloud Function to fail and have Pub/Sub redeliver the message.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shared.deadline import Deadline
from shared.errors import KlaviyoError
from shared.klaviyo.bulk import BulkMixin
from shared.klaviyo.catalog import CatalogMixin
from shared.klaviyo.privacy import PrivacyMixin
from shared.klaviyo.transport import DEFAULT_TIMEOUT, log

if TYPE_CHECKING:
    from shared.config import Settings

PHONE_POINTER = "/data/attributes/phone_number"
# Attributes by which Klaviyo identifies a profile (a conflict on any of them is a 409).
IDENTIFIERS = ("email", "phone_number", "external_id")


def filter_string(value: str) -> str:
    """Quote a value for Klaviyo's filter syntax: `equals(email,"<value>")`. Filter values are
    JSON strings: quotes, backslashes and control characters are escaped as JSON escapes them."""
    return json.dumps(value, ensure_ascii=False)


def _duplicate_profile_id(exc: KlaviyoError) -> str | None:
    if exc.status != 409:
        return None
    for error in exc.errors:
        if error.get("code") == "duplicate_profile":
            dup = (error.get("meta") or {}).get("duplicate_profile_id")
            if dup:
                return str(dup)
    return None


def _points_at(exc: KlaviyoError, pointer: str) -> bool:
    return any((e.get("source") or {}).get("pointer") == pointer for e in exc.errors)


class KlaviyoClient(CatalogMixin, BulkMixin, PrivacyMixin):
    """`KlaviyoClient(api_key, base_url, revision)`; see CatalogMixin and BulkMixin for the rest."""

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> KlaviyoClient:
        return cls(
            settings.klaviyo_api_key.get_secret_value(),
            settings.klaviyo_base_url,
            settings.klaviyo_api_revision,
            **kwargs,
        )

    # -- profiles ----------------------------------------------------------------------------------

    def upsert_profile(
        self, attributes: dict[str, Any], *, deadline: Deadline = Deadline.never()
    ) -> dict[str, Any]:
        """Create or update a profile by its identifiers (`POST /api/profile-import`).

        Returns the profile resource. Two documented failures are repaired once each:
        409 duplicate_profile (the identifiers belong to different profiles) → update the profile
        Klaviyo names, and if its identifiers still belong to another profile, update its other
        attributes without them; 400 on the phone number (not E.164, or SMS not set up) → send
        without it.
        """
        attrs = dict(attributes)
        profile_id: str | None = None
        tried_duplicate = tried_without_phone = False
        while True:
            data: dict[str, Any] = {"type": "profile", "attributes": attrs}
            if profile_id:
                data["id"] = profile_id
            try:
                body = self.request("POST", "/api/profile-import", json={"data": data},
                                    deadline=deadline)
                return (body or {}).get("data") or {}
            except KlaviyoError as exc:
                duplicate = _duplicate_profile_id(exc)
                if duplicate and not tried_duplicate:
                    tried_duplicate = True
                    profile_id = duplicate
                    log.info("klaviyo duplicate profile, updating the existing one",
                             profileId=duplicate)
                    continue
                if duplicate and profile_id and any(k in attrs for k in IDENTIFIERS):
                    # The identifiers belong to different profiles, which only a merge in Klaviyo
                    # can join. Update the named profile's other attributes rather than lose the
                    # update, and say that a merge is needed.
                    log.warning("klaviyo profile identifiers conflict; updated the profile without "
                                "identifiers, merge the profiles in Klaviyo",
                                profileId=profile_id, otherProfileId=duplicate)
                    attrs = {k: v for k, v in attrs.items() if k not in IDENTIFIERS}
                    continue
                if (exc.status == 400 and not tried_without_phone and "phone_number" in attrs
                        and _points_at(exc, PHONE_POINTER)):
                    tried_without_phone = True
                    attrs.pop("phone_number")
                    log.warning("klaviyo rejected the phone number, upserting profile without it",
                                status=exc.status, errorCode=exc.code)
                    continue
                raise

    def _find_profile(
        self, field: str, value: str, *, deadline: Deadline
    ) -> list[dict[str, Any]]:
        params = {"filter": f"equals({field},{filter_string(value)})"}
        body = self.request("GET", "/api/profiles", params=params, deadline=deadline)
        return list((body or {}).get("data") or [])

    def find_profile_by_external_id(
        self, external_id: str, *, deadline: Deadline = Deadline.never()
    ) -> dict[str, Any] | None:
        for profile in self._find_profile("external_id", external_id, deadline=deadline):
            if (profile.get("attributes") or {}).get("external_id") == external_id:
                return profile
        return None

    def find_profile_by_email(
        self, email: str, *, deadline: Deadline = Deadline.never()
    ) -> dict[str, Any] | None:
        wanted = email.strip().casefold()
        for profile in self._find_profile("email", email.strip(), deadline=deadline):
            if str((profile.get("attributes") or {}).get("email") or "").casefold() == wanted:
                return profile
        return None

    # -- events ------------------------------------------------------------------------------------

    def create_event(
        self, attributes: dict[str, Any], *, deadline: Deadline = Deadline.never()
    ) -> None:
        """Record one event (`POST /api/events`, 202). Attributes carry `metric`, `profile`,
        `properties`, `time`, `value` and a deterministic `unique_id` so a redelivery is a no-op."""
        self.request("POST", "/api/events",
                     json={"data": {"type": "event", "attributes": attributes}},
                     deadline=deadline)


__all__ = ["DEFAULT_TIMEOUT", "KlaviyoClient", "filter_string"]
