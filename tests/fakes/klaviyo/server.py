"""FakeKlaviyo: the WSGI app and server that routes each request to its API family."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import traceback
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.fakes.klaviyo.catalog import _BY_COLLECTION, _CATALOG_JOB_RE, CATALOG, Catalog
from tests.fakes.klaviyo.errors import JSONAPI, ApiFailure, _invalid, _not_found, error_object
from tests.fakes.klaviyo.events import Events
from tests.fakes.klaviyo.faults import Fault, FaultInjector
from tests.fakes.klaviyo.jobs import BulkJobs
from tests.fakes.klaviyo.log import RecordedRequest
from tests.fakes.klaviyo.privacy import Privacy
from tests.fakes.klaviyo.profiles import Profiles
from tests.fakes.klaviyo.spec import Contract, contract
from tests.fakes.klaviyo.state import REVISION_RE


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass



class FakeKlaviyo(Profiles, Events, Catalog, BulkJobs, Privacy, FaultInjector):
    def __init__(self, api_key: str = "pk_test_fake_klaviyo_key", host: str = "127.0.0.1") -> None:
        self.api_key = api_key
        self.host = host
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._generation = 0
        # Klaviyo's OpenAPI document: every request is checked against it (None: not checked).
        self.contract: Contract | None = contract()
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
            # Refused requests outlive reset() (a test may reset between examples) until the
            # refusal guard of the `klaviyo` fixture has seen them.
            self.refused_earlier: list[RecordedRequest] = [
                *getattr(self, "refused_earlier", []),
                *(r for r in getattr(self, "requests", []) if r.refused)]
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

    # -- helpers for tests -------------------------------------------------------------------------

    def requests_to(self, method: str | None = None, path: str | None = None
                    ) -> list[RecordedRequest]:
        """Recorded requests, filtered by method and path prefix."""
        return [r for r in list(self.requests)
                if (method is None or r.method == method.upper())
                and (path is None or r.path.startswith(path))]

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
        operation = None
        try:
            self._check_request(request, method, body_bytes, parse_failed)
            if self.contract is not None:
                try:
                    operation = self.contract.check_request(method, raw_path, request.args,
                                                            record.headers, body_bytes, parsed)
                except ApiFailure as failure:
                    record.violations = failure.errors
                    raise
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
        if status >= 400 and isinstance(body, dict):
            record.errors = list(body.get("errors") or [])
        if operation is not None and not record.faulted and self.contract is not None:
            # The answer must be one the document declares: otherwise the fake is wrong.
            for problem in self.contract.check_response(operation, status, body):
                self.internal_errors.append(f"answer not as the OpenAPI document declares: "
                                            f"{problem}")
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
                return self._paged(job["import_errors"], query, request.path,
                                   _page_size(query), _page_params(query))
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
        # CollectionLinks: `self` required, `next`/`prev` strings when there is such a page.
        links: dict[str, Any] = {"self": f"{self.url}{path}"}
        if offset + size < len(resources):
            params = dict(extra or {})
            params["page[cursor]"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
            links["next"] = f"{self.url}{path}?{urlencode(params)}"
        return 200, {"data": page, "links": links}, {}


def _page_size(query: Any, default: int = 20, maximum: int = 100) -> int:
    """`page[size]` as the spec declares it for Klaviyo's paged collections: default 20, 1–100
    (a value outside is a 400, as Klaviyo answers)."""
    try:
        size = int(query.get("page[size]", default))
    except ValueError:
        size = 0
    if not 1 <= size <= maximum:
        raise ApiFailure(400, [error_object(400, "invalid", "Invalid input.",
                                            f"page[size] must be between 1 and {maximum}.",
                                            parameter="page[size]")])
    return size


def _page_params(query: Any) -> dict[str, str]:
    """The query a `links.next` keeps (everything but the cursor)."""
    return {k: v for k, v in query.items() if k != "page[cursor]"}
