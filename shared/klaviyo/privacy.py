"""Marketing consent (profile subscription bulk jobs) and GDPR deletion (data-privacy jobs).

Body shapes follow Klaviyo's OpenAPI (klaviyo/openapi, revision 2026-07-15):
`SubscriptionCreateJobCreateQuery` (POST /api/profile-subscription-bulk-create-jobs, ≤1000
profiles, 202 without a body), `SubscriptionDeleteJobCreateQuery` (POST
/api/profile-subscription-bulk-delete-jobs, ≤100 profiles, 202) and
`DataPrivacyCreateDeletionJobQuery` (POST /api/data-privacy-deletion-jobs, exactly one of email,
phone_number or profile id, 202). None of them returns a job to poll.
"""

from __future__ import annotations

from typing import Any

from shared.deadline import Deadline
from shared.klaviyo.transport import KlaviyoTransport

MAX_SUBSCRIBE_PROFILES = 1_000
MAX_UNSUBSCRIBE_PROFILES = 100


def _list_relationship(list_id: str | None) -> dict[str, Any]:
    if not list_id:
        return {}
    return {"relationships": {"list": {"data": {"type": "list", "id": list_id}}}}


class PrivacyMixin(KlaviyoTransport):
    def subscribe_profiles(
        self, profiles: list[dict[str, Any]], *, list_id: str | None = None,
        historical_import: bool = False, custom_source: str | None = None,
        deadline: Deadline = Deadline.never(),
    ) -> None:
        """Subscribe profiles (`{"email"?, "phone_number"?, "subscriptions": {...}}` each).

        With a list, its opt-in settings apply (double opt-in sends a confirmation first).
        `historical_import=True` records consent already collected elsewhere: every entry must
        carry `consented_at` (in the past), and Klaviyo skips double opt-in and "Added to List"
        flows; Klaviyo rejects `consented_at` without it.
        """
        if not profiles or len(profiles) > MAX_SUBSCRIBE_PROFILES:
            raise ValueError(f"1 to {MAX_SUBSCRIBE_PROFILES} profiles per subscribe job, "
                             f"got {len(profiles)}")
        attributes: dict[str, Any] = {
            "profiles": {"data": [{"type": "profile", "attributes": p} for p in profiles]},
        }
        if custom_source:
            attributes["custom_source"] = custom_source
        if historical_import:
            attributes["historical_import"] = True
        body = {"data": {"type": "profile-subscription-bulk-create-job", "attributes": attributes,
                         **_list_relationship(list_id)}}
        self.request("POST", "/api/profile-subscription-bulk-create-jobs", json=body,
                     deadline=deadline)

    def unsubscribe_profiles(
        self, profiles: list[dict[str, Any]], *, list_id: str | None = None,
        deadline: Deadline = Deadline.never(),
    ) -> None:
        """Unsubscribe profiles (`{"email"?, "phone_number"?, "subscriptions": {...}}` each) and
        remove them from `list_id`. Klaviyo's consent is per channel, not per list: profiles not in
        the list are unsubscribed all the same."""
        if not profiles or len(profiles) > MAX_UNSUBSCRIBE_PROFILES:
            raise ValueError(f"1 to {MAX_UNSUBSCRIBE_PROFILES} profiles per unsubscribe job, "
                             f"got {len(profiles)}")
        body = {"data": {
            "type": "profile-subscription-bulk-delete-job",
            "attributes": {
                "profiles": {"data": [{"type": "profile", "attributes": p} for p in profiles]},
            },
            **_list_relationship(list_id),
        }}
        self.request("POST", "/api/profile-subscription-bulk-delete-jobs", json=body,
                     deadline=deadline)

    def request_profile_deletion(
        self, *, email: str | None = None, phone_number: str | None = None,
        profile_id: str | None = None, deadline: Deadline = Deadline.never(),
    ) -> None:
        """Ask Klaviyo to delete (GDPR) every profile matching exactly one identifier.

        Asynchronous and irreversible; Klaviyo keeps the identifier on its deleted-profiles record
        as GDPR requires. Klaviyo has no deletion by external_id: look the profile up first.
        """
        given = [n for n, v in (("email", email), ("phone_number", phone_number),
                                ("id", profile_id)) if v]
        if len(given) != 1:
            raise ValueError("exactly one of email, phone_number or profile_id is required")
        profile: dict[str, Any] = {"type": "profile", "attributes": {}}
        if profile_id:
            profile["id"] = profile_id
        elif email:
            profile["attributes"]["email"] = email
        else:
            profile["attributes"]["phone_number"] = phone_number
        body = {"data": {"type": "data-privacy-deletion-job",
                         "attributes": {"profile": {"data": profile}}}}
        self.request("POST", "/api/data-privacy-deletion-jobs", json=body, deadline=deadline)
