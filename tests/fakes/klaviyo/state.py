"""What the API families of the fake share: identifiers, formats, ids and times."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

CATALOG_PREFIX = "$custom:::$default:::"

PROFILE_ATTRIBUTES = frozenset({
    "email", "phone_number", "external_id", "anonymous_id", "_kx", "first_name", "last_name",
    "organization", "locale", "title", "image", "location", "properties",
})
IDENTIFIERS = ("email", "phone_number", "external_id", "anonymous_id", "_kx")
MATCHED_IDENTIFIERS = ("email", "phone_number", "external_id", "anonymous_id")
LOCATION_ATTRIBUTES = frozenset({
    "address1", "address2", "city", "country", "latitude", "longitude", "region", "zip",
    "timezone", "ip",
})
EVENT_ATTRIBUTES = frozenset({
    "properties", "time", "value", "value_currency", "unique_id", "metric", "profile", "backfill",
})
BULK_EVENT_ATTRIBUTES = EVENT_ATTRIBUTES - {"profile"}
PHONE_RE = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
REVISION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _new_id() -> str:
    return "01" + uuid.uuid4().hex[:24].upper()
