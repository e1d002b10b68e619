"""The fake's request log: one record per request received (faulted and refused ones too)."""

from __future__ import annotations

from dataclasses import dataclass
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

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())
