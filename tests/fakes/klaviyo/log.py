"""The fake's request log: one record per request received (faulted and refused ones too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RecordedRequest:
    method: str
    path: str  # percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    json: Any
    raw_path: str = ""
    status: int | None = None  # None until answered (or when the connection was dropped)
    faulted: bool = False
    # The JSON:API errors of a refusal by Klaviyo's OpenAPI document (tests.fakes.klaviyo.spec).
    violations: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # of a 4XX/5XX answer

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def refused(self) -> bool:
        """Klaviyo refused the request as invalid: a 4XX that is neither an injected fault nor an
        answer about the account's data (404 not found, 409 conflict, 429 throttled)."""
        return (self.status is not None and 400 <= self.status < 500 and not self.faulted
                and self.status not in (404, 409, 429)) or bool(self.violations)
