"""A fake Klaviyo API served over real HTTP, plus pytest fixtures.

It behaves like Klaviyo (revision 2026-07-15, per klaviyo/openapi) for what our client uses:
auth/revision/content-type checks, JSON:API errors with pointers, profile upsert by identifiers
(409 duplicate_profile when they belong to two profiles), event dedup by (profile, metric,
unique_id), catalog CRUD with required-attribute checks and cursor paging, and bulk jobs that are
`queued`/`processing` before `complete`. Faults (429 with Retry-After, 5xx, slow answers, dropped
connections) are injected per path.

State is public so tests can assert on it: `profiles`/`items`/`variants`/`categories` hold JSON:API
shaped resources (`{"type", "id", "attributes", "relationships"}`), `events` holds one record per
distinct event, `requests` holds every request received (including faulted and duplicate ones).
Consent and GDPR: profile subscription bulk create/delete jobs (body validation incl. the
`consented_at` ⇔ `historical_import` rule) fill `consents` and `list_members`; data-privacy deletion
jobs delete every matching profile at once (Klaviyo: asynchronously) and log `deletion_jobs`.

Load it with `pytest_plugins = ["tests.fakes.klaviyo"]`; fixtures: `klaviyo_server` (session),
`klaviyo` (function: the fake, reset), `klaviyo_client` (a KlaviyoClient pointed at it).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

JSONAPI = "application/vnd.api+json"
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

MAX_BULK_PROFILES = 10_000
MAX_BULK_EVENTS = 1_000
MAX_CATALOG_BULK = 100


@dataclass(frozen=True)
class _CatalogSpec:
    kind: str
    collection: str
    type: str
    bulk_key: str
    create_attributes: frozenset[str]
    required: tuple[str, ...]
    patch_attributes: frozenset[str]
    create_relationships: frozenset[str]
    patch_relationships: frozenset[str]
    strings: frozenset[str]
    numbers: frozenset[str]


_ITEM_PATCH = frozenset({
    "title", "price", "description", "url", "image_full_url", "image_thumbnail_url", "images",
    "custom_metadata", "published",
})
_VARIANT_PATCH = frozenset({
    "title", "description", "sku", "inventory_policy", "inventory_quantity", "price", "url",
    "image_full_url", "image_thumbnail_url", "images", "custom_metadata", "published",
})
_TYPES = frozenset({"external_id", "integration_type", "catalog_type"})

CATALOG: dict[str, _CatalogSpec] = {
    "item": _CatalogSpec(
        "item", "catalog-items", "catalog-item", "items",
        _ITEM_PATCH | _TYPES, ("external_id", "title", "description", "url"), _ITEM_PATCH,
        frozenset({"categories"}), frozenset({"categories"}),
        frozenset({"external_id", "title", "description", "url", "image_full_url",
                   "image_thumbnail_url"}),
        frozenset({"price"}),
    ),
    "variant": _CatalogSpec(
        "variant", "catalog-variants", "catalog-variant", "variants",
        _VARIANT_PATCH | _TYPES,
        ("external_id", "title", "description", "sku", "inventory_quantity", "price", "url"),
        _VARIANT_PATCH, frozenset({"item"}), frozenset(),
        frozenset({"external_id", "title", "description", "sku", "url", "image_full_url",
                   "image_thumbnail_url"}),
        frozenset({"price", "inventory_quantity"}),
    ),
    "category": _CatalogSpec(
        "category", "catalog-categories", "catalog-category", "categories",
        frozenset({"name"}) | _TYPES, ("external_id", "name"), frozenset({"name"}),
        frozenset({"items"}), frozenset({"items"}),
        frozenset({"external_id", "name"}), frozenset(),
    ),
}
_BY_COLLECTION = {spec.collection: spec for spec in CATALOG.values()}
_CATALOG_JOB_RE = re.compile(r"^catalog-(item|variant|category)-bulk-(create|update|delete)-jobs$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _new_id() -> str:
    return "01" + uuid.uuid4().hex[:24].upper()


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


@dataclass
class Fault:
    status: int | None
    times: int
    path: str | None = None
    method: str | None = None
    retry_after: float | None = None
    delay: float | None = None
    disconnect: bool = False
    errors: list[dict[str, Any]] | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.times > 0 and (self.method is None or self.method.upper() == method)
                and (self.path is None or path.startswith(self.path)))


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


# -- filter parsing (Klaviyo's `op(field,value),op(field,value)` syntax) ---------------------------

_TERM_RE = re.compile(r"^([a-z-]+)\(([\w.$]+),(.*)\)$", re.S)


def parse_filter(expression: str) -> list[tuple[str, str, Any]]:
    terms, depth, quoted, escaped, start = [], 0, False, False, 0
    for i, ch in enumerate(expression):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            terms.append(expression[start:i])
            start = i + 1
    terms.append(expression[start:])
    parsed = []
    for term in terms:
        m = _TERM_RE.match(term.strip())
        if not m:
            raise ApiFailure(400, [error_object(400, "invalid", "Invalid input.",
                                                f"Invalid filter term {term!r}",
                                                parameter="filter")])
        raw = m.group(3).strip()
        try:
            value = json.loads(raw)
        except ValueError:
            raise ApiFailure(400, [error_object(400, "invalid", "Invalid input.",
                                                f"Invalid filter value {raw!r}",
                                                parameter="filter")]) from None
        parsed.append((m.group(1), m.group(2), value))
    return parsed


def _bad_filter(detail: str) -> ApiFailure:
    return ApiFailure(400, [error_object(400, "invalid", "Invalid input.", detail,
                                         parameter="filter")])


class FakeKlaviyo:
    def __init__(self, api_key: str = "pk_test_fake_klaviyo_key", host: str = "127.0.0.1") -> None:
        self.api_key = api_key
        self.host = host
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._generation = 0
        self.reset()

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeKlaviyo is not started")
        return f"http://{self.host}:{self._server.port}"

    def start(self) -> FakeKlaviyo:
        self._server = make_server(self.host, 0, self, threaded=True,
                                   request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="fake-klaviyo", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset(self) -> None:
        with self._lock:
            self._generation += 1  # answers still sleeping from an earlier test are dropped
            self.requests: list[RecordedRequest] = []
            self.faults: list[Fault] = []
            # Seeded random faults (tests.fakes.chaos.RandomFaults) on top of `faults`; None: off.
            self.random_faults: Any = None
            self.profiles: dict[str, dict[str, Any]] = {}
            self.events: list[dict[str, Any]] = []
            self._event_keys: set[tuple[Any, ...]] = set()
            self.items: dict[str, dict[str, Any]] = {}
            self.variants: dict[str, dict[str, Any]] = {}
            self.categories: dict[str, dict[str, Any]] = {}
            self.jobs: dict[str, dict[str, Any]] = {}
            self.internal_errors: list[str] = []
            self.page_size = 100  # catalog list pages (Klaviyo: 100)
            # Statuses a bulk job reports on its 1st, 2nd, ... GET; `complete` after that.
            self.job_status_sequence: list[str] = ["queued", "processing"]
            # Consent and GDPR deletion (see "consent ... deletion" below).
            self.consents: dict[str, dict[str, dict[str, Any]]] = {}
            self.list_members: dict[str, set[str]] = {}
            self.deletion_jobs: list[dict[str, Any]] = []

    # -- fault injection ---------------------------------------------------------------------------

    def inject(
        self, status: int | None = None, *, times: int = 1, path: str | None = None,
        method: str | None = None, retry_after: float | None = None,
        delay: float | None = None, errors: list[dict[str, Any]] | None = None,
    ) -> Fault:
        """The next `times` matching requests answer `status` (after sleeping `delay` seconds).

        With `status=None` the request is only delayed, then answered normally. `errors`
        replaces the JSON:API error list of the answer.
        """
        fault = Fault(status, times, path, method, retry_after, delay, False, errors)
        with self._lock:
            self.faults.append(fault)
        return fault

    def inject_disconnect(self, times: int = 1, path: str | None = None,
                          method: str | None = None) -> Fault:
        """The next `times` matching requests get their connection closed without an answer."""
        fault = Fault(None, times, path, method, disconnect=True)
        with self._lock:
            self.faults.append(fault)
        return fault

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def _random_fault(self, method: str, record: RecordedRequest, body: bytes) -> Fault | None:
        chaos = self.random_faults
        draw = chaos.draw(chaos.request_key(method, record.path, record.query, body))
        if draw is None:
            return None
        return Fault(draw.status, 1, retry_after=draw.retry_after, delay=draw.delay,
                     disconnect=draw.disconnect)

    # -- helpers for tests -------------------------------------------------------------------------

    def requests_to(self, method: str | None = None, path: str | None = None
                    ) -> list[RecordedRequest]:
        """Recorded requests, filtered by method and path prefix."""
        return [r for r in list(self.requests)
                if (method is None or r.method == method.upper())
                and (path is None or r.path.startswith(path))]

    def add_profile(self, **attributes: Any) -> str:
        """Seed a profile directly; returns its Klaviyo id."""
        with self._lock:
            return self._create_profile(attributes)["id"]

    def find_profile(self, **identifier: str) -> dict[str, Any] | None:
        ((name, value),) = identifier.items()
        with self._lock:
            pid = self._find_by_identifier(name, value)
            return self.profiles[pid] if pid else None

    def catalog_state(self, kind: str) -> dict[str, dict[str, Any]]:
        return {"item": self.items, "variant": self.variants, "category": self.categories}[kind]

    # -- WSGI --------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        raw_path = urlsplit(environ.get("RAW_URI") or environ.get("REQUEST_URI")
                            or request.path).path
        segments = [unquote(s) for s in raw_path.split("/") if s]
        method = request.method.upper()
        body_bytes = request.get_data()
        parsed: Any = None
        parse_failed = False
        if body_bytes:
            try:
                parsed = json.loads(body_bytes)
            except ValueError:
                parse_failed = True
        record = RecordedRequest(
            method=method, path=unquote(raw_path), query=dict(request.args.items()),
            headers={k.lower(): v for k, v in request.headers.items()}, json=parsed,
            raw_path=raw_path,
        )
        with self._lock:
            self.requests.append(record)
            generation = self._generation
        try:
            self._check_request(request, method, body_bytes, parse_failed)
            fault = self._take_fault(method, record.path)
            if fault is None and self.random_faults is not None:
                fault = self._random_fault(method, record, body_bytes)
            if fault is not None:
                record.faulted = True
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.disconnect:
                    sock = environ.get("werkzeug.socket")
                    if sock is not None:
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                    # werkzeug treats ConnectionError as a dropped connection: no answer, no log.
                    raise ConnectionAbortedError("fault injection: connection dropped")
                if fault.status is not None:
                    raise self._fault_failure(fault)
            with self._lock:
                if generation != self._generation:  # reset() while we slept: the test is over
                    raise ApiFailure(503, [error_object(503, "error", "Service unavailable.",
                                                        "The fake was reset.")])
                status, body, headers = self._route(method, segments, parsed, request)
        except ApiFailure as failure:
            status, body, headers = failure.status, {"errors": failure.errors}, failure.headers
        except ConnectionError:
            raise
        except Exception:  # a bug in the fake must not pass for a Klaviyo 500
            self.internal_errors.append(traceback.format_exc())
            status, headers = 500, {}
            body = {"errors": [error_object(500, "error", "A server error occurred.",
                                            "fake internal error")]}
        record.status = status
        response = Response(
            json.dumps(body) if body is not None else b"", status=status,
            content_type=JSONAPI if body is not None else None, headers=headers,
        )
        return response(environ, start_response)

    def _check_request(self, request: Request, method: str, body: bytes, parse_failed: bool
                       ) -> None:
        if request.headers.get("Authorization") != f"Klaviyo-API-Key {self.api_key}":
            raise ApiFailure(401, [error_object(
                401, "not_authenticated", "Authentication credentials were not provided.",
                "Missing or invalid private key.")])
        revision = request.headers.get("revision")
        if not revision or not REVISION_RE.match(revision):
            raise ApiFailure(400, [error_object(
                400, "invalid", "Invalid input.",
                "A valid revision header (YYYY-MM-DD[.suffix]) is required.",
                parameter="revision")])
        if body:
            mimetype = (request.mimetype or "").lower()
            # Klaviyo documents application/vnd.api+json and also accepts plain JSON.
            if mimetype not in (JSONAPI, "application/json"):
                raise ApiFailure(415, [error_object(
                    415, "unsupported_media_type", "Unsupported media type.",
                    f"Unsupported media type {mimetype or 'none'!r} in request.")])
            if parse_failed:
                raise ApiFailure(400, [error_object(400, "parse_error", "Malformed JSON.",
                                                    "The request body is not valid JSON.")])
        elif method in ("POST", "PATCH"):
            raise _invalid("/data", "A request body is required.")

    @staticmethod
    def _fault_failure(fault: Fault) -> ApiFailure:
        status = fault.status or 500
        headers: dict[str, str] = {}
        if fault.errors is not None:
            errors = fault.errors
        elif status == 429:
            wait = fault.retry_after if fault.retry_after is not None else 1
            errors = [error_object(429, "throttled", "Request was throttled.",
                                   f"Request was throttled. Expected available in {wait:g} "
                                   "seconds.", pointer="/data/")]
        elif status >= 500:
            errors = [error_object(status, "error", "A server error occurred.",
                                   "A server error occurred.")]
        else:
            errors = [error_object(status, "error", "Error.", "Injected error.")]
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        return ApiFailure(status, errors, headers)

    # -- routing -----------------------------------------------------------------------------------

    def _route(self, method: str, segs: list[str], body: Any, request: Request
               ) -> tuple[int, Any, dict[str, str]]:
        if not segs or segs[0] != "api" or len(segs) < 2:
            raise _not_found("Unknown endpoint.")
        head, rest = segs[1], segs[2:]
        query = request.args

        def allow(*methods: str) -> None:
            if method not in methods:
                raise ApiFailure(405, [error_object(405, "method_not_allowed",
                                                    "Method not allowed.",
                                                    f"Method {method!r} not allowed.")])

        if head == "profile-import" and not rest:
            allow("POST")
            return self._profile_import(body)
        if head == "profiles":
            allow("GET")
            if not rest:
                return self._list_profiles(query)
            if len(rest) == 1:
                profile = self.profiles.get(rest[0])
                if profile is None:
                    raise _not_found()
                return 200, {"data": self._profile_resource(profile)}, {}
        if head == "events" and not rest:
            allow("POST")
            return self._create_event(body)
        if head in _BY_COLLECTION:
            spec = _BY_COLLECTION[head]
            if not rest:
                allow("GET", "POST")
                if method == "POST":
                    return self._catalog_create(spec, body)
                return self._catalog_list(spec, query, f"/api/{head}")
            if len(rest) == 1:
                allow("GET", "PATCH", "DELETE")
                if method == "GET":
                    obj = self.catalog_state(spec.kind).get(rest[0])
                    if obj is None:
                        raise _not_found()
                    return 200, {"data": self._catalog_resource(spec, obj)}, {}
                if method == "PATCH":
                    return self._catalog_patch(spec, rest[0], body)
                return self._catalog_delete(spec, rest[0])
            if len(rest) == 2 and spec.kind == "item" and rest[1] == "variants":
                allow("GET")
                if rest[0] not in self.items:
                    raise _not_found()
                return self._catalog_list(CATALOG["variant"], query,
                                          "/".join(["/api", head, quote(rest[0], safe=""),
                                                    "variants"]),
                                          only=lambda v: v["relationships"]["item"] == rest[0])
        if head == "profile-bulk-import-jobs":
            if not rest:
                allow("POST")
                return self._profile_bulk_import(body)
            job = self.jobs.get(rest[0])
            if job is None or job["type"] != "profile-bulk-import-job":
                raise _not_found()
            allow("GET")
            if len(rest) == 1:
                return 200, {"data": self._poll_job(job)}, {}
            if len(rest) == 2 and rest[1] == "import-errors":
                return self._paged(job["import_errors"], query, request.path, 100)
        if head == "event-bulk-create-jobs" and not rest:
            allow("POST")
            return self._event_bulk_create(body)
        m = _CATALOG_JOB_RE.match(head)
        if m:
            spec, op = CATALOG[m.group(1)], m.group(2)
            if not rest:
                allow("POST")
                return self._catalog_bulk(spec, op, body)
            if len(rest) == 1:
                allow("GET")
                job = self.jobs.get(rest[0])
                if job is None or job["type"] != f"catalog-{spec.kind}-bulk-{op}-job":
                    raise _not_found()
                return 200, {"data": self._poll_job(job)}, {}
        if head in ("profile-subscription-bulk-create-jobs",
                    "profile-subscription-bulk-delete-jobs") and not rest:
            allow("POST")
            return self._subscription_job(body, head.split("-")[3])
        if head == "data-privacy-deletion-jobs" and not rest:
            allow("POST")
            return self._data_privacy_deletion(body)
        raise _not_found("Unknown endpoint.")

    def _paged(self, resources: list[dict[str, Any]], query: Any, path: str, size: int,
               extra: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        cursor = query.get("page[cursor]")
        try:
            offset = int(base64.urlsafe_b64decode(cursor.encode()).decode()) if cursor else 0
        except ValueError:
            raise ApiFailure(400, [error_object(400, "invalid", "Invalid input.",
                                                "Invalid page cursor.",
                                                parameter="page[cursor]")]) from None
        page = resources[offset:offset + size]
        links: dict[str, Any] = {"self": f"{self.url}{path}", "next": None, "prev": None}
        if offset + size < len(resources):
            params = dict(extra or {})
            params["page[cursor]"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
            links["next"] = f"{self.url}{path}?{urlencode(params)}"
        return 200, {"data": page, "links": links}, {}

    # -- profiles ----------------------------------------------------------------------------------

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
    def _validate_profile(attrs: Any, base: str, *, check_phone: bool = True) -> None:
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
                not isinstance(phone, str) or not PHONE_RE.match(phone)):
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
        if attrs.get("properties") is not None and not isinstance(attrs["properties"], dict):
            raise _invalid(f"{base}/properties", "properties must be an object.")

    @staticmethod
    def _has_identifier(attrs: dict[str, Any]) -> bool:
        return any(attrs.get(name) not in (None, "") for name in IDENTIFIERS)

    def _create_profile(self, attrs: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        profile = {"type": "profile", "id": _new_id(),
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
        attrs = data.get("attributes")
        self._validate_profile(attrs, base, check_phone=check_phone)
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

    # -- events ------------------------------------------------------------------------------------

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
        profile = self._validate_event_profile(attrs.get("profile"), "/data/attributes/profile")
        pid = self._resolve_event_profile(profile)
        event_attrs = {k: v for k, v in attrs.items() if k != "profile"}
        self._store_event(pid, metric, event_attrs)
        return 202, None, {}

    # -- catalog -----------------------------------------------------------------------------------

    def _catalog_resource(self, spec: _CatalogSpec, obj: dict[str, Any]) -> dict[str, Any]:
        self_link = f"{self.url}/api/{spec.collection}/{quote(obj['id'], safe='')}/"
        return {"type": spec.type, "id": obj["id"],
                "attributes": json.loads(json.dumps(obj["attributes"])),
                "links": {"self": self_link}}

    def _validate_catalog(self, spec: _CatalogSpec, op: str, resource: Any, base: str,
                          path_id: str | None = None) -> None:
        if not isinstance(resource, dict) or resource.get("type") != spec.type:
            raise _invalid(f"{base}/type", f"The resource type must be '{spec.type}'.")
        if op == "delete":
            if not isinstance(resource.get("id"), str):
                raise _invalid(f"{base}/id", "id is required.")
            return
        if op == "update":
            if not isinstance(resource.get("id"), str):
                raise _invalid(f"{base}/id", "id is required.")
            if path_id is not None and resource["id"] != path_id:
                raise ApiFailure(409, [error_object(
                    409, "conflict", "Conflict.", "The id in the body does not match the URL.",
                    pointer=f"{base}/id")])
        elif "id" in resource:
            raise _invalid(f"{base}/id", "id is not allowed when creating.")
        attrs = resource.get("attributes")
        if not isinstance(attrs, dict):
            raise _invalid(f"{base}/attributes", "attributes are required.")
        allowed = spec.create_attributes if op == "create" else spec.patch_attributes
        for key in attrs:
            if key not in allowed:
                raise _invalid(f"{base}/attributes/{key}",
                               f"'{key}' is not a valid field for the resource '{spec.type}'.")
        if op == "create":
            for key in spec.required:
                if attrs.get(key) is None:
                    raise _invalid(f"{base}/attributes/{key}", f"'{key}' is a required field.")
            if attrs.get("integration_type", "$custom") != "$custom":
                raise _invalid(f"{base}/attributes/integration_type",
                               "Only '$custom' is supported.")
            if attrs.get("catalog_type", "$default") != "$default":
                raise _invalid(f"{base}/attributes/catalog_type", "Only '$default' is supported.")
        for key, value in attrs.items():
            if value is None:
                continue
            bad = ((key in spec.strings and not isinstance(value, str))
                   or (key in spec.numbers and (isinstance(value, bool)
                                                or not isinstance(value, (int, float))))
                   or (key == "published" and not isinstance(value, bool))
                   or (key == "custom_metadata" and not isinstance(value, dict))
                   or (key == "images" and not (isinstance(value, list)
                                                and all(isinstance(i, str) for i in value)))
                   or (key == "inventory_policy" and value not in (0, 1, 2)))
            if bad:
                raise _invalid(f"{base}/attributes/{key}", f"'{key}' has an invalid value.")
        rels = resource.get("relationships") or {}
        if not isinstance(rels, dict):
            raise _invalid(f"{base}/relationships", "relationships must be an object.")
        allowed_rels = spec.create_relationships if op == "create" else spec.patch_relationships
        for key, rel in rels.items():
            if key not in allowed_rels:
                raise _invalid(f"{base}/relationships/{key}",
                               f"'{key}' is not a valid relationship here.")
            linkage = rel.get("data") if isinstance(rel, dict) else None
            many = key != "item"
            entries = linkage if many else [linkage]
            want = {"categories": "catalog-category", "items": "catalog-item",
                    "item": "catalog-item"}[key]
            if (many and not isinstance(linkage, list)) or not all(
                    isinstance(e, dict) and e.get("type") == want and isinstance(e.get("id"), str)
                    for e in entries):
                raise _invalid(f"{base}/relationships/{key}/data", "Invalid relationship data.")
        if spec.kind == "variant" and op == "create" and not (rels.get("item") or {}).get("data"):
            raise _invalid(f"{base}/relationships/item", "A variant needs its item.")

    def _catalog_apply(self, spec: _CatalogSpec, op: str, resource: dict[str, Any],
                       pointer: str) -> dict[str, Any] | None:
        store = self.catalog_state(spec.kind)
        rels = resource.get("relationships") or {}
        now = _now()
        if op == "create":
            attrs = dict(resource["attributes"])
            cid = CATALOG_PREFIX + attrs["external_id"]
            if cid in store:
                raise ApiFailure(409, [error_object(
                    409, "conflict", "Conflict.", f"A {spec.type} with this id already exists.",
                    pointer=pointer)])
            if spec.kind == "variant" and rels["item"]["data"]["id"] not in self.items:
                raise ApiFailure(400, [error_object(
                    400, "invalid", "Invalid input.", "The variant's catalog item does not exist.",
                    pointer=f"{pointer.rsplit('/attributes', 1)[0]}/relationships/item/data/id")])
            attrs.setdefault("integration_type", "$custom")
            attrs.setdefault("catalog_type", "$default")
            if spec.kind != "category":
                attrs.setdefault("published", True)
            if spec.kind == "variant":
                attrs.setdefault("inventory_policy", 0)
            attrs.update(created=now, updated=now)
            relationships: dict[str, Any] = {}
            if spec.kind == "item":
                relationships["categories"] = [e["id"] for e in
                                               (rels.get("categories") or {}).get("data") or []]
            elif spec.kind == "variant":
                relationships["item"] = rels["item"]["data"]["id"]
            obj = {"type": spec.type, "id": cid, "attributes": attrs,
                   "relationships": relationships}
            store[cid] = obj
            if spec.kind == "category" and "items" in rels:
                self._set_category_items(cid, [e["id"] for e in rels["items"]["data"]])
            return obj
        cid = resource["id"]
        obj = store.get(cid)
        if obj is None:
            raise ApiFailure(404, [error_object(404, "not_found", "Not found.",
                                                f"{spec.type} {cid} does not exist.",
                                                pointer=pointer)])
        if op == "delete":
            del store[cid]
            if spec.kind == "category":
                self._set_category_items(cid, [])
            return None
        obj["attributes"].update(resource["attributes"])
        obj["attributes"]["updated"] = now
        if spec.kind == "item" and "categories" in rels:
            obj["relationships"]["categories"] = [e["id"] for e in rels["categories"]["data"]]
        if spec.kind == "category" and "items" in rels:
            self._set_category_items(cid, [e["id"] for e in rels["items"]["data"]])
        return obj

    def _set_category_items(self, category_id: str, item_ids: list[str]) -> None:
        for iid, item in self.items.items():
            cats = item["relationships"].setdefault("categories", [])
            if iid in item_ids and category_id not in cats:
                cats.append(category_id)
            elif iid not in item_ids and category_id in cats:
                cats.remove(category_id)

    def _catalog_create(self, spec: _CatalogSpec, body: Any) -> tuple[int, Any, dict[str, str]]:
        data = body.get("data") if isinstance(body, dict) else None
        self._validate_catalog(spec, "create", data, "/data")
        obj = self._catalog_apply(spec, "create", data, "/data/attributes/external_id")
        return 201, {"data": self._catalog_resource(spec, obj)}, {}

    def _catalog_patch(self, spec: _CatalogSpec, cid: str, body: Any
                       ) -> tuple[int, Any, dict[str, str]]:
        if cid not in self.catalog_state(spec.kind):
            raise _not_found(f"{spec.type} {cid} does not exist.")
        data = body.get("data") if isinstance(body, dict) else None
        self._validate_catalog(spec, "update", data, "/data", path_id=cid)
        obj = self._catalog_apply(spec, "update", data, "/data/id")
        return 200, {"data": self._catalog_resource(spec, obj)}, {}

    def _catalog_delete(self, spec: _CatalogSpec, cid: str) -> tuple[int, Any, dict[str, str]]:
        if cid not in self.catalog_state(spec.kind):
            raise _not_found(f"{spec.type} {cid} does not exist.")
        self._catalog_apply(spec, "delete", {"type": spec.type, "id": cid}, "/data/id")
        return 204, None, {}

    def _catalog_list(self, spec: _CatalogSpec, query: Any, path: str,
                      only: Any = None) -> tuple[int, Any, dict[str, str]]:
        selected = [o for o in self.catalog_state(spec.kind).values() if only is None or only(o)]
        expression = query.get("filter")
        if expression:
            for op, fld, value in parse_filter(expression):
                selected = [o for o in selected if self._catalog_filter(spec, op, fld, value, o)]
        extra = {k: v for k, v in query.items() if k != "page[cursor]"}
        return self._paged([self._catalog_resource(spec, o) for o in selected], query, path,
                           self.page_size, extra)

    def _catalog_filter(self, spec: _CatalogSpec, op: str, fld: str, value: Any,
                        obj: dict[str, Any]) -> bool:
        attrs, rels = obj["attributes"], obj["relationships"]
        if op == "any" and fld == "ids" and isinstance(value, list):
            return obj["id"] in value
        if op == "equals" and fld == "published" and spec.kind != "category":
            return attrs.get("published") == value
        if op == "contains" and fld == ("name" if spec.kind == "category" else "title"):
            return str(value) in str(attrs.get(fld) or "")
        if op == "equals" and fld == "category.id" and spec.kind == "item":
            return value in rels.get("categories", [])
        if op == "equals" and fld == "item.id" and spec.kind == "variant":
            return rels.get("item") == value
        if op == "equals" and fld == "item.id" and spec.kind == "category":
            item = self.items.get(value)
            return bool(item) and obj["id"] in item["relationships"].get("categories", [])
        if op == "equals" and fld == "sku" and spec.kind == "variant":
            return attrs.get("sku") == value
        raise _bad_filter(f"Filter {op}({fld}) is not supported on {spec.collection}.")

    # -- bulk jobs ---------------------------------------------------------------------------------

    def _new_job(self, job_type: str, total: int, failures: list[dict[str, Any]],
                 path: str, import_errors: list[dict[str, Any]] | None = None
                 ) -> dict[str, Any]:
        now = datetime.now(timezone.utc)
        job = {
            "id": uuid.uuid4().hex, "type": job_type, "path": path, "polls": 0,
            "total": total, "failures": failures, "import_errors": import_errors or [],
            "created_at": now.isoformat(),
            "expires_at": (now + timedelta(days=7)).isoformat(),
        }
        self.jobs[job["id"]] = job
        return job

    def _job_resource(self, job: dict[str, Any], status: str) -> dict[str, Any]:
        done = status in ("complete", "cancelled")
        attributes: dict[str, Any] = {
            "status": status,
            "created_at": job["created_at"],
            "total_count": job["total"],
            "completed_count": job["total"] - len(job["failures"]) if done else 0,
            "failed_count": len(job["failures"]) if done else 0,
            "completed_at": _now() if done else None,
            "expires_at": job["expires_at"],
        }
        if job["type"] != "profile-bulk-import-job":
            attributes["errors"] = job["failures"] if done else []
        else:
            attributes["started_at"] = job["created_at"] if status != "queued" else None
        return {"type": job["type"], "id": job["id"], "attributes": attributes,
                "links": {"self": f"{self.url}{job['path']}/{job['id']}/"}}

    def _poll_job(self, job: dict[str, Any]) -> dict[str, Any]:
        job["polls"] += 1
        sequence = self.job_status_sequence
        status = sequence[job["polls"] - 1] if job["polls"] <= len(sequence) else "complete"
        return self._job_resource(job, status)

    def _profile_bulk_import(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != "profile-bulk-import-job":
            raise _invalid("/data/type", "The resource type must be 'profile-bulk-import-job'.")
        profiles = ((data.get("attributes") or {}).get("profiles") or {}).get("data")
        if not isinstance(profiles, list) or not profiles:
            raise _invalid("/data/attributes/profiles/data", "profiles are required.")
        if len(profiles) > MAX_BULK_PROFILES:
            raise _invalid("/data/attributes/profiles/data",
                           f"A maximum of {MAX_BULK_PROFILES} profiles is allowed per request.")
        # Schema problems fail the whole request (all-or-nothing validation, as Klaviyo does).
        for i, resource in enumerate(profiles):
            base = f"/data/attributes/profiles/data/{i}"
            if not isinstance(resource, dict) or resource.get("type") != "profile":
                raise _invalid(f"{base}/type", "The resource type must be 'profile'.")
            self._validate_profile(resource.get("attributes"), f"{base}/attributes",
                                   check_phone=False)
            if not resource.get("id") and not self._has_identifier(resource["attributes"]):
                raise _invalid(f"{base}/attributes", "A profile identifier is required.")
        # Per-profile processing problems become import errors; the rest are applied.
        import_errors: list[dict[str, Any]] = []
        for i, resource in enumerate(profiles):
            base = f"/data/attributes/profiles/data/{i}/attributes"
            try:
                self._upsert_profile(resource, base)
            except ApiFailure as failure:
                err = failure.errors[0]
                import_errors.append({
                    "type": "import-error", "id": str(uuid.uuid4()),
                    "attributes": {"code": err["code"], "title": err["title"],
                                   "detail": err["detail"], "source": err["source"],
                                   "original_payload": resource.get("attributes")},
                })
        job = self._new_job("profile-bulk-import-job", len(profiles),
                            [e["attributes"] for e in import_errors],
                            "/api/profile-bulk-import-jobs", import_errors)
        return 202, {"data": self._job_resource(job, "queued")}, {}

    def _event_bulk_create(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != "event-bulk-create-job":
            raise _invalid("/data/type", "The resource type must be 'event-bulk-create-job'.")
        entries = ((data.get("attributes") or {}).get("events-bulk-create") or {}).get("data")
        root = "/data/attributes/events-bulk-create/data"
        if not isinstance(entries, list) or not entries:
            raise _invalid(root, "events-bulk-create data is required.")
        total = sum(len(((e.get("attributes") or {}).get("events") or {}).get("data") or [])
                    for e in entries if isinstance(e, dict))
        if total > MAX_BULK_EVENTS:
            raise _invalid(root, f"A maximum of {MAX_BULK_EVENTS} events is allowed per request.")
        seen: set[tuple[Any, ...]] = set()
        checked = []
        for i, entry in enumerate(entries):
            base = f"{root}/{i}"
            if not isinstance(entry, dict) or entry.get("type") != "event-bulk-create":
                raise _invalid(f"{base}/type", "The resource type must be 'event-bulk-create'.")
            attrs = entry.get("attributes") or {}
            profile = self._validate_event_profile(attrs.get("profile"),
                                                   f"{base}/attributes/profile")
            identity = self._identity(profile)
            events = (attrs.get("events") or {}).get("data")
            if not isinstance(events, list):
                raise _invalid(f"{base}/attributes/events/data", "events are required.")
            named = []
            for j, event in enumerate(events):
                ebase = f"{base}/attributes/events/data/{j}"
                if not isinstance(event, dict) or event.get("type") != "event":
                    raise _invalid(f"{ebase}/type", "The resource type must be 'event'.")
                metric = self._validate_event(event.get("attributes"), f"{ebase}/attributes",
                                              BULK_EVENT_ATTRIBUTES)
                unique = event["attributes"].get("unique_id")
                if unique:
                    key = (identity, metric, unique)
                    if key in seen:
                        raise _invalid(f"{ebase}/attributes/unique_id",
                                       "unique_id is repeated for the same profile and metric.",
                                       code="duplicate_unique_id")
                    seen.add(key)
                named.append((metric, event["attributes"]))
            checked.append((profile, attrs.get("backfill"), named))
        for profile, backfill, named in checked:
            pid = self._resolve_event_profile(profile)
            for metric, event_attrs in named:
                if backfill is not None and "backfill" not in event_attrs:
                    event_attrs = {**event_attrs, "backfill": backfill}
                self._store_event(pid, metric, event_attrs)
        return 202, None, {}

    def _identity(self, profile: dict[str, Any]) -> Any:
        if profile.get("id"):
            return profile["id"]
        attrs = profile.get("attributes") or {}
        matches = self._matches(attrs)
        if matches:
            return matches[0]
        return tuple((n, str(attrs.get(n)).casefold()) for n in MATCHED_IDENTIFIERS
                     if attrs.get(n))

    def _catalog_bulk(self, spec: _CatalogSpec, op: str, body: Any
                      ) -> tuple[int, Any, dict[str, str]]:
        job_type = f"catalog-{spec.kind}-bulk-{op}-job"
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != job_type:
            raise _invalid("/data/type", f"The resource type must be '{job_type}'.")
        root = f"/data/attributes/{spec.bulk_key}/data"
        resources = ((data.get("attributes") or {}).get(spec.bulk_key) or {}).get("data")
        if not isinstance(resources, list) or not resources:
            raise _invalid(root, f"{spec.bulk_key} are required.")
        if len(resources) > MAX_CATALOG_BULK:
            raise _invalid(root, f"A maximum of {MAX_CATALOG_BULK} resources is allowed.")
        for i, resource in enumerate(resources):
            self._validate_catalog(spec, op, resource, f"{root}/{i}")
        failures = []
        for i, resource in enumerate(resources):
            try:
                self._catalog_apply(spec, op, resource, f"{root}/{i}")
            except ApiFailure as failure:
                err = dict(failure.errors[0])
                failures.append({k: err[k] for k in ("id", "code", "title", "detail", "source")})
        job = self._new_job(job_type, len(resources), failures, f"/api/catalog-{spec.kind}-bulk-"
                            f"{op}-jobs")
        return 202, {"data": self._job_resource(job, "queued")}, {}

    # -- consent (profile subscription jobs) and data-privacy deletion -----------------------------
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
            when = when.replace(tzinfo=timezone.utc)
        if when > datetime.now(timezone.utc):
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


# -- pytest fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def klaviyo_server() -> Iterator[FakeKlaviyo]:
    fake = FakeKlaviyo().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def klaviyo(klaviyo_server: FakeKlaviyo) -> Iterator[FakeKlaviyo]:
    klaviyo_server.reset()
    yield klaviyo_server
    internal = list(klaviyo_server.internal_errors)
    klaviyo_server.reset()
    assert not internal, "the fake Klaviyo server crashed:\n" + "\n".join(internal)


@pytest.fixture
def klaviyo_client(klaviyo: FakeKlaviyo) -> Iterator[Any]:
    from shared.config import DEFAULT_KLAVIYO_REVISION
    from shared.klaviyo import KlaviyoClient

    client = KlaviyoClient(klaviyo.api_key, klaviyo.url, DEFAULT_KLAVIYO_REVISION,
                           timeout=(1.0, 2.0), retry_base=0.05, retry_cap=0.2)
    try:
        yield client
    finally:
        client.close()


__all__ = ["FakeKlaviyo", "Fault", "RecordedRequest", "error_object", "parse_filter"]
