"""Consent (profile subscription bulk create/delete jobs, incl. the `consented_at` ⇔
`historical_import` rule) and data-privacy deletion jobs (every matching profile at once)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.fakes.klaviyo.errors import _invalid
from tests.fakes.klaviyo.state import EMAIL_RE, PHONE_RE, _now

if TYPE_CHECKING:
    from tests.fakes.klaviyo.base import FakeApi
else:
    FakeApi = object  # the type checker's view of the sibling families; nothing at run time


class Privacy(FakeApi):
    """Mixin of FakeKlaviyo: state `consents`, `list_members`, `deletion_jobs`."""

    consents: dict[str, dict[str, dict[str, Any]]]
    list_members: dict[str, set[str]]
    deletion_jobs: list[dict[str, Any]]
    profiles: dict[str, dict[str, Any]]
    events: list[dict[str, Any]]

    # Shapes: klaviyo/openapi rev 2026-07-15 SubscriptionCreateJobCreateQuery (≤1000 profiles),
    # SubscriptionDeleteJobCreateQuery (≤100), DataPrivacyCreateDeletionJobQuery (one identifier).
    # All answer 202 without a body. State: `consents[profile_id][channel]`, `list_members[list]`,
    # `deletion_jobs` (one record per accepted request, with the profile ids it deleted).

    def _subscription_job(self, body: Any, op: str) -> tuple[int, Any, dict[str, str]]:
        subscribe = op == "create"
        job_type = f"profile-subscription-bulk-{op}-job"
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != job_type:
            raise _invalid("/data/type", f"The resource type must be '{job_type}'.")
        for key in data:
            if key not in ("type", "attributes", "relationships"):
                raise _invalid(f"/data/{key}", f"'{key}' is not a valid field.")
        attrs = data.get("attributes")
        if not isinstance(attrs, dict):
            raise _invalid("/data/attributes", "attributes are required.")
        allowed = {"custom_source", "profiles", "historical_import"} if subscribe else {"profiles"}
        for key in attrs:
            if key not in allowed:
                raise _invalid(f"/data/attributes/{key}",
                               f"'{key}' is not a valid field for the resource '{job_type}'.")
        historical = attrs.get("historical_import")
        if historical is not None and not isinstance(historical, bool):
            raise _invalid("/data/attributes/historical_import", "Must be a boolean.")
        source = attrs.get("custom_source")
        if source is not None and not isinstance(source, str):
            raise _invalid("/data/attributes/custom_source", "Must be a string.")
        list_id = self._subscription_list(data.get("relationships"))
        root = "/data/attributes/profiles/data"
        profiles = (attrs.get("profiles") or {}).get("data") if isinstance(
            attrs.get("profiles"), dict) else None
        limit = 1000 if subscribe else 100
        if not isinstance(profiles, list) or not profiles:
            raise _invalid(root, "profiles are required.")
        if len(profiles) > limit:
            raise _invalid(root, f"A maximum of {limit} profiles is allowed per request.")
        checked = [
            self._validate_subscription_profile(p, f"{root}/{i}", subscribe, bool(historical))
            for i, p in enumerate(profiles)
        ]
        for identifiers, channels in checked:
            pid = next(iter(self._matches(identifiers)), None)
            if pid is None:  # Klaviyo creates the profile, then (un)subscribes it
                pid = self._create_profile(identifiers)["id"]
            record = self.consents.setdefault(pid, {})
            for channel, parameters in channels.items():
                record[channel] = {**parameters, "custom_source": source, "list_id": list_id,
                                   "updated": _now()}
            if list_id is not None:
                members = self.list_members.setdefault(list_id, set())
                if subscribe:
                    members.add(pid)
                else:
                    members.discard(pid)
        return 202, None, {}

    @staticmethod
    def _subscription_list(relationships: Any) -> str | None:
        if relationships is None:
            return None
        base = "/data/relationships"
        if not isinstance(relationships, dict) or set(relationships) - {"list"}:
            raise _invalid(base, "Only a 'list' relationship is allowed.")
        linkage = (relationships.get("list") or {}).get("data")
        if (not isinstance(linkage, dict) or linkage.get("type") != "list"
                or not isinstance(linkage.get("id"), str) or not linkage["id"]):
            raise _invalid(f"{base}/list/data", "A list linkage {type: list, id} is required.")
        return str(linkage["id"])

    def _validate_subscription_profile(
        self, resource: Any, base: str, subscribe: bool, historical: bool
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        if not isinstance(resource, dict) or resource.get("type") != "profile":
            raise _invalid(f"{base}/type", "The resource type must be 'profile'.")
        attrs = resource.get("attributes")
        if not isinstance(attrs, dict):
            raise _invalid(f"{base}/attributes", "attributes are required.")
        allowed = {"email", "phone_number", "subscriptions"}
        if subscribe:
            allowed |= {"age_gated_date_of_birth"}
        for key in attrs:
            if key not in allowed:
                raise _invalid(f"{base}/attributes/{key}",
                               f"'{key}' is not a valid field for the resource 'profile'.")
        email, phone = attrs.get("email"), attrs.get("phone_number")
        if email is not None and (not isinstance(email, str) or not EMAIL_RE.match(email)):
            raise _invalid(f"{base}/attributes/email", "Invalid email address")
        if phone is not None and (not isinstance(phone, str) or not PHONE_RE.match(phone)):
            raise _invalid(f"{base}/attributes/phone_number",
                           "Invalid phone number format (Example of a valid format: +12345678901)")
        subscriptions = attrs.get("subscriptions")
        sbase = f"{base}/attributes/subscriptions"
        if not isinstance(subscriptions, dict) or not subscriptions:
            raise _invalid(sbase, "subscriptions are required.")
        kinds = {"email": {"marketing", "open_tracking"} if subscribe else {"marketing"},
                 "sms": {"marketing", "transactional"}}
        consent = "SUBSCRIBED" if subscribe else "UNSUBSCRIBED"
        channels: dict[str, dict[str, Any]] = {}
        for channel, spec in subscriptions.items():
            if channel not in kinds:  # whatsapp/push exist in Klaviyo; never sent by the connector
                raise _invalid(f"{sbase}/{channel}", f"Channel '{channel}' is not supported here.")
            if not isinstance(spec, dict) or set(spec) - kinds[channel] or (
                    channel == "email" and "marketing" not in spec):
                raise _invalid(f"{sbase}/{channel}", f"Invalid {channel} subscription parameters.")
            for kind, parameters in spec.items():
                pbase = f"{sbase}/{channel}/{kind}"
                if not isinstance(parameters, dict) or parameters.get("consent") != consent:
                    raise _invalid(f"{pbase}/consent", f"consent must be '{consent}'.")
                known = {"consent", "consented_at"} if subscribe else {"consent"}
                extra = set(parameters) - known
                if extra:
                    raise _invalid(f"{pbase}/{sorted(extra)[0]}", "Unknown subscription parameter.")
                at = parameters.get("consented_at")
                if subscribe and at is not None and not historical:
                    raise _invalid(f"{pbase}/consented_at",
                                   "consented_at can only be provided with historical_import.")
                if subscribe and historical and kind == "marketing":
                    self._check_consented_at(at, f"{pbase}/consented_at")
            if channel == "email" and not email:
                raise _invalid(f"{base}/attributes/email", "An email is required for email.")
            if channel == "sms" and not phone:
                raise _invalid(f"{base}/attributes/phone_number",
                               "A phone number is required for SMS.")
            channels[channel] = {"consent": consent, "consented_at": (
                spec.get("marketing") or {}).get("consented_at")}
        identifiers = {k: v for k, v in (("email", email), ("phone_number", phone)) if v}
        return identifiers, channels

    @staticmethod
    def _check_consented_at(value: Any, pointer: str) -> None:
        if not isinstance(value, str):
            raise _invalid(pointer, "consented_at is required with historical_import.")
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _invalid(pointer, "consented_at must be an ISO 8601 date-time.") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if when > datetime.now(UTC):
            raise _invalid(pointer, "consented_at must be in the past.")

    def _data_privacy_deletion(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != "data-privacy-deletion-job":
            raise _invalid("/data/type", "The resource type must be 'data-privacy-deletion-job'.")
        attrs = data.get("attributes")
        if not isinstance(attrs, dict) or set(attrs) != {"profile"}:
            raise _invalid("/data/attributes", "attributes must hold exactly 'profile'.")
        wrapper = attrs["profile"]
        profile = wrapper.get("data") if isinstance(wrapper, dict) else None
        base = "/data/attributes/profile/data"
        if not isinstance(profile, dict) or profile.get("type") != "profile":
            raise _invalid(f"{base}/type", "The resource type must be 'profile'.")
        pattrs = profile.get("attributes")
        if not isinstance(pattrs, dict):
            raise _invalid(f"{base}/attributes", "attributes are required.")
        for key in pattrs:
            if key not in ("email", "phone_number"):
                raise _invalid(f"{base}/attributes/{key}",
                               f"'{key}' is not a valid field for the resource 'profile'.")
        given = [(n, v) for n, v in (("id", profile.get("id")), ("email", pattrs.get("email")),
                                     ("phone_number", pattrs.get("phone_number"))) if v]
        if len(given) != 1:
            raise _invalid(base, "Exactly one of id, email or phone_number is required.")
        ((name, value),) = given
        if not isinstance(value, str):
            raise _invalid(f"{base}/{name}", "Must be a string.")
        if name == "id":
            deleted = [value] if value in self.profiles else []
        else:  # every profile with the identifier, as Klaviyo documents
            wanted = value.casefold() if name == "email" else value
            deleted = [pid for pid, p in self.profiles.items()
                       if (str(p["attributes"].get(name) or "").casefold() if name == "email"
                           else p["attributes"].get(name)) == wanted]
        for pid in deleted:
            del self.profiles[pid]
            self.consents.pop(pid, None)
            for members in self.list_members.values():
                members.discard(pid)
            self.events = [e for e in self.events if e["profile_id"] != pid]
        self.deletion_jobs.append({"identifier": {name: value}, "deleted": deleted})
        return 202, None, {}
