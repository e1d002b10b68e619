"""Profiles: upsert by identifiers (409 duplicate_profile), profile import, GET and listing."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from tests.fakes.klaviyo.errors import ApiFailure, _bad_filter, _invalid, _not_found, error_object
from tests.fakes.klaviyo.filters import parse_filter
from tests.fakes.klaviyo.state import (
    EMAIL_RE,
    IDENTIFIERS,
    LOCATION_ATTRIBUTES,
    MATCHED_IDENTIFIERS,
    PHONE_RE,
    PROFILE_ATTRIBUTES,
    _new_id,
    _now,
)

if TYPE_CHECKING:
    from tests.fakes.klaviyo.base import FakeApi
else:
    FakeApi = object  # the type checker's view of the sibling families; nothing at run time


_NANP = re.compile(r"^\+1[2-9]\d{2}[2-9]\d{6}$")


def _possible_number(phone: str) -> bool:
    """Klaviyo checks that a number exists, not only its E.164 shape: a North American (+1)
    number is exactly ten digits whose area code and exchange do not start with 0 or 1 (the
    NANP's rule), so `+11005550100` is refused however well it is formatted. Other country
    codes: the E.164 shape only."""
    return not phone.startswith("+1") or bool(_NANP.match(phone))


class Profiles(FakeApi):
    """Mixin of FakeKlaviyo: state `profiles`."""

    profiles: dict[str, dict[str, Any]]
    _lock: Any

    def add_profile(self, **attributes: Any) -> str:
        """Seed a profile directly; returns its Klaviyo id."""
        with self._lock:
            return self._create_profile(attributes)["id"]

    def find_profile(self, **identifier: str) -> dict[str, Any] | None:
        ((name, value),) = identifier.items()
        with self._lock:
            pid = self._find_by_identifier(name, value)
            return self.profiles[pid] if pid else None

    def _profile_resource(self, profile: dict[str, Any]) -> dict[str, Any]:
        return {"type": "profile", "id": profile["id"],
                "attributes": json.loads(json.dumps(profile["attributes"])),
                "links": {"self": f"{self.url}/api/profiles/{profile['id']}/"}}

    def _find_by_identifier(self, name: str, value: Any) -> str | None:
        if value in (None, ""):
            return None
        for pid, profile in self.profiles.items():
            have = profile["attributes"].get(name)
            if have is None:
                continue
            if name == "email":
                if str(have).casefold() == str(value).casefold():
                    return pid
            elif have == value:
                return pid
        return None

    def _matches(self, attrs: dict[str, Any]) -> list[str]:
        found: list[str] = []
        for name in MATCHED_IDENTIFIERS:
            pid = self._find_by_identifier(name, attrs.get(name))
            if pid and pid not in found:
                found.append(pid)
        return found

    @staticmethod
    def _validate_profile(attrs: Any, base: str, *, check_phone: bool = True) -> dict[str, Any]:
        """The profile attributes, if Klaviyo would accept them; ApiFailure (400) otherwise."""
        if not isinstance(attrs, dict):
            raise _invalid(base, "Profile attributes must be an object.")
        for key in attrs:
            if key not in PROFILE_ATTRIBUTES:
                raise _invalid(f"{base}/{key}",
                               f"'{key}' is not a valid field for the resource 'profile'.")
        email = attrs.get("email")
        if email is not None and (not isinstance(email, str) or not EMAIL_RE.match(email)):
            raise _invalid(f"{base}/email", "Invalid email address")
        phone = attrs.get("phone_number")
        if check_phone and phone is not None and (
                not isinstance(phone, str) or not PHONE_RE.match(phone)
                or not _possible_number(phone)):
            raise _invalid(f"{base}/phone_number",
                           "Invalid phone number format (Example of a valid format: +12345678901)")
        location = attrs.get("location")
        if location is not None:
            if not isinstance(location, dict):
                raise _invalid(f"{base}/location", "location must be an object.")
            for key in location:
                if key not in LOCATION_ATTRIBUTES:
                    raise _invalid(f"{base}/location/{key}",
                                   f"'{key}' is not a valid field for 'location'.")
        return attrs
        if attrs.get("properties") is not None and not isinstance(attrs["properties"], dict):
            raise _invalid(f"{base}/properties", "properties must be an object.")

    @staticmethod
    def _has_identifier(attrs: dict[str, Any]) -> bool:
        return any(attrs.get(name) not in (None, "") for name in IDENTIFIERS)

    def _create_profile(self, attrs: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        profile: dict[str, Any] = {"type": "profile", "id": _new_id(),
                                   "attributes": {"created": now, "updated": now}}
        self.profiles[profile["id"]] = profile
        self._apply_profile(profile, attrs)
        return profile

    @staticmethod
    def _apply_profile(profile: dict[str, Any], attrs: dict[str, Any]) -> None:
        stored = profile["attributes"]
        for key, value in attrs.items():
            if key in ("properties", "location") and isinstance(value, dict):
                merged = dict(stored.get(key) or {})
                merged.update(value)
                stored[key] = merged
            else:
                stored[key] = value
        stored["updated"] = _now()

    def _duplicate(self, other_id: str) -> ApiFailure:
        err = error_object(409, "duplicate_profile", "Conflict.",
                           "A profile already exists with one of these identifiers.",
                           pointer="/data/attributes",
                           meta={"duplicate_profile_id": other_id})
        err["links"] = {}
        return ApiFailure(409, [err])

    def _upsert_profile(self, data: Any, base: str, *, check_phone: bool = True
                        ) -> tuple[int, dict[str, Any]]:
        if not isinstance(data, dict) or data.get("type") != "profile":
            raise _invalid(base.rsplit("/attributes", 1)[0] + "/type",
                           "The resource type must be 'profile'.")
        attrs = self._validate_profile(data.get("attributes"), base, check_phone=check_phone)
        profile_id = data.get("id")
        if profile_id:
            if profile_id not in self.profiles:
                raise _not_found(f"Profile {profile_id} does not exist.")
            for name in MATCHED_IDENTIFIERS:
                other = self._find_by_identifier(name, attrs.get(name))
                if other and other != profile_id:
                    raise self._duplicate(other)
            self._apply_profile(self.profiles[profile_id], attrs)
            return 200, self.profiles[profile_id]
        if not self._has_identifier(attrs):
            raise _invalid(base, "At least one profile identifier is required.")
        matches = self._matches(attrs)
        if len(matches) > 1:
            raise self._duplicate(matches[1])
        if matches:
            self._apply_profile(self.profiles[matches[0]], attrs)
            return 200, self.profiles[matches[0]]
        return 201, self._create_profile(attrs)

    def _profile_import(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        data = body.get("data") if isinstance(body, dict) else None
        status, profile = self._upsert_profile(data, "/data/attributes")
        return status, {"data": self._profile_resource(profile)}, {}

    def _list_profiles(self, query: Any) -> tuple[int, Any, dict[str, str]]:
        selected = list(self.profiles.values())
        expression = query.get("filter")
        if expression:
            for op, fld, value in parse_filter(expression):
                if fld not in ("id", "email", "phone_number", "external_id") or op not in (
                        "equals", "any"):
                    raise _bad_filter(f"Filter {op}({fld}) is not supported on profiles.")
                wanted = value if op == "any" else [value]
                if fld == "email":
                    wanted = [str(w).casefold() for w in wanted]

                def keep(p: dict[str, Any], fld: str = fld, wanted: list[Any] = wanted) -> bool:
                    have = p["id"] if fld == "id" else p["attributes"].get(fld)
                    if fld == "email" and have is not None:
                        have = str(have).casefold()
                    return have in wanted

                selected = [p for p in selected if keep(p)]
        try:
            size = int(query.get("page[size]", 20))
        except ValueError:
            size = 0
        if not 1 <= size <= 100:
            raise ApiFailure(400, [error_object(400, "invalid", "Invalid input.",
                                                "page[size] must be between 1 and 100.",
                                                parameter="page[size]")])
        extra = {k: v for k, v in query.items() if k != "page[cursor]"}
        return self._paged([self._profile_resource(p) for p in selected], query,
                           "/api/profiles", size, extra)
