"""Klaviyo's JSON:API error documents, shared by every API family of the fake."""

from __future__ import annotations

import uuid
from typing import Any

JSONAPI = "application/vnd.api+json"


def error_object(
    status: int, code: str, title: str, detail: str, *, pointer: str | None = None,
    parameter: str | None = None, meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    source: dict[str, str] = {}
    if pointer is not None:
        source["pointer"] = pointer
    if parameter is not None:
        source["parameter"] = parameter
    return {"id": str(uuid.uuid4()), "status": status, "code": code, "title": title,
            "detail": detail, "source": source, "meta": meta or {}}


class ApiFailure(Exception):
    """Raised inside a handler to answer with a JSON:API error."""

    def __init__(self, status: int, errors: list[dict[str, Any]],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.errors = errors
        self.headers = headers or {}


def _invalid(pointer: str, detail: str, code: str = "invalid") -> ApiFailure:
    return ApiFailure(400, [error_object(400, code, "Invalid input.", detail, pointer=pointer)])


def _not_found(detail: str = "Not found.") -> ApiFailure:
    return ApiFailure(404, [error_object(404, "not_found", "Not found.", detail)])



def _bad_filter(detail: str) -> ApiFailure:
    return ApiFailure(400, [error_object(400, "invalid", "Invalid input.", detail,
                                         parameter="filter")])
