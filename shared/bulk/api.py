"""The bulk HTTP API, framework-agnostic: (method, path, body bytes) → Response(status, JSON).

Longer than our ~400-line aim on purpose: it is one idea (the route table, each route's body
validation and its answer) and a reader checks a route against its 400s in one place.

Routes (every response is JSON):
  POST /sync/<kind>          start a job → 202 {"jobId", ...}; 409 {"jobId"} if one is live;
                             400 bad body; 413 body too large; 503 first task not queued
  POST /sync/<kind>/stop     → 200 (the job stops at its next batch); 404 if none is live
  GET  /sync/<kind>          the kind's latest job → 200; 404 if none has run
  GET  /sync/jobs/<jobId>    one job → 200; 404 unknown
  anything else              404 unknown path, 405 known path with another method (Allow)
Kinds: customers, orders, categories, products. Bodies (all optional):
  customers, orders:     {"ids": ["<ct id>", ...]}  1..BULK_MAX_IDS non-empty strings of at most
                         64 characters (commercetools ids are 36-character UUIDs), deduplicated
  categories, products:  {"deleteAll": true, "confirmDeletion": "<kind>"}  first deletes all
                         of that kind in Klaviyo; refused unless confirmDeletion is exactly the kind

Callers (BULK_AUTH): behind API Gateway the caller is the principal of the Google ID token the
gateway verified, forwarded as X-Apigateway-Api-Userinfo (the token's claims, base64url JSON).
`id-token` answers 401 to a request without it; `id-token-or-api-key` takes such a request as the
anonymous "api-key" caller (the gateway checked the key); `none` (local runs) has no caller check.
Google signs ID tokens for every Google account, so behind the gateway only principals in
BULK_CALLERS or BULK_ADMINS are served (else 403), and deleteAll only BULK_ADMINS (else 403; and
nobody while an API key is also accepted). Every start, stop and deleteAll, allowed or refused, is
one "bulk audit" log line with the caller; the job records who started (`startedBy`) and stopped
(`stoppedBy`) it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
    field_validator,
)

from shared.bulk.base import KINDS, Kind
from shared.bulk.exporters import DELETING
from shared.bulk.runner import Conflict, EnqueueError, Runner
from shared.log import get_logger
from shared.state.jobs import Job, progress, utcnow

log = get_logger("bulk.api")

MAX_ID_LENGTH = 64
# A partial sync's ids are stored as one document (Firestore: at most 1 MiB, each string counted
# as its UTF-8 bytes + 1). 10,000 commercetools ids (36-character UUIDs) take 370,000 bytes.
MAX_IDS_BYTES = 900_000
DELETABLE: tuple[Kind, ...] = tuple(k for k in KINDS if k in DELETING)  # deleteAll
PARTIAL: tuple[Kind, ...] = ("customers", "orders")
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

USERINFO_HEADER = "X-Apigateway-Api-Userinfo"
AuthMode = Literal["none", "id-token", "id-token-or-api-key"]
API_KEY_CALLER = "api-key"  # a gateway API key holder: no name, never an admin
LOCAL_CALLER = "local"  # no gateway (local runs)

# Every (method, path) the function serves: the API Gateway spec must list exactly these.
# GET / is the operator console (shared/bulk/console.py, served by bulk/main.py).
ROUTES: tuple[tuple[str, str], ...] = tuple(
    [("GET", "/")]
    + [(m, f"/sync/{k}") for k in KINDS for m in ("GET", "POST")]
    + [("POST", f"/sync/{k}/stop") for k in KINDS]
    + [("GET", "/sync/jobs/{jobId}")]
)


@dataclass
class Response:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(self.body, separators=(",", ":"))


def _error(status: int, code: str, message: str, **extra: Any) -> Response:
    return Response(status, {"error": code, "message": message, **extra})


class BadRequest(Exception):
    pass


class Unauthenticated(Exception):
    pass


# ---- callers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    principal: str  # service account or user email (or "sub:<id>"), "api-key" or "local"
    verified: bool  # the gateway verified a Google ID token for it


def caller_from_userinfo(value: str) -> Caller:
    """The caller in API Gateway's X-Apigateway-Api-Userinfo header (the verified ID token's
    claims as base64url JSON, padding optional). Raises Unauthenticated."""
    try:
        raw = base64.urlsafe_b64decode(value.strip() + "=" * (-len(value.strip()) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        raise Unauthenticated("the gateway's user info is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise Unauthenticated("the gateway's user info is not a JSON object")
    email, sub = claims.get("email"), claims.get("sub")
    if isinstance(email, str) and email and claims.get("email_verified", True) in (True, "true"):
        return Caller(email.lower(), verified=True)
    if isinstance(sub, str) and sub:
        return Caller(f"sub:{sub}", verified=True)
    raise Unauthenticated("the ID token names no caller (no email or sub claim)")


def listed(principal: str, entries: frozenset[str]) -> bool:
    """principal is an entry, or matches a "*@domain" entry."""
    domain = "*@" + principal.rpartition("@")[2] if "@" in principal else None
    return principal in entries or (domain is not None and domain in entries)


class HeaderItems(Protocol):
    """Request headers as (name, value) pairs: a dict, or werkzeug's Headers (which repeat)."""

    def items(self) -> Iterable[tuple[str, str]]: ...


def identify(mode: AuthMode, headers: HeaderItems) -> Caller:
    """Who is calling, per BULK_AUTH. Raises Unauthenticated."""
    if mode == "none":
        return Caller(LOCAL_CALLER, verified=False)
    value = next((v for k, v in headers.items() if k.lower() == USERINFO_HEADER.lower()), None)
    if value:
        return caller_from_userinfo(value)
    if mode == "id-token-or-api-key":
        return Caller(API_KEY_CALLER, verified=False)
    raise Unauthenticated("call this API through its API Gateway with a Google ID token: "
                          "Authorization: Bearer $(gcloud auth print-identity-token ...)")


# ---- request bodies --------------------------------------------------------------------------



def _check_id(value: str) -> str:
    if not value.strip():
        raise ValueError("is blank")
    if _CONTROL.search(value):
        raise ValueError("contains a control character")
    return value


CtId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_check_id)
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PartialSyncBody(_Body):
    ids: list[CtId] | None = None

    @field_validator("ids", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must be an array of ids (omit it to sync everything)")
        return value

    @field_validator("ids")
    @classmethod
    def _clean(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must not be empty (omit it to sync everything)")
        return list(dict.fromkeys(value))  # deduplicated, first occurrence order


class DeleteAllBody(_Body):
    deleteAll: bool = False
    confirmDeletion: str | None = None


def _loc(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}
_TYPE_NAMES = {"string_type": "a string", "list_type": "an array", "bool_type": "true or false"}


def _describe(exc: ValidationError, allowed: list[str]) -> str:
    problems = []
    for item in exc.errors():
        where, kind = _loc(item["loc"]), item["type"]
        if kind == "extra_forbidden":
            problems.append(f"unknown field {where!r} (allowed: {', '.join(allowed)})")
        elif kind in _TYPE_NAMES:
            problems.append(f"{where} must be {_TYPE_NAMES[kind]}")
        elif kind == "string_too_short":
            problems.append(f"{where} must not be empty")
        elif kind == "string_too_long":
            problems.append(f"{where} is longer than {MAX_ID_LENGTH} characters")
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            problems.append(f"{where} {message}")
    return "; ".join(problems)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object ({} when empty). Raises BadRequest."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8 text") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON ({exc.msg} at line {exc.lineno} column "
                         f"{exc.colno})") from None
    except RecursionError:
        raise BadRequest("body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest(f"body must be a JSON object, not {_JSON_TYPES[type(data)]}")
    return data


@dataclass(frozen=True)
class SyncOptions:
    ids: list[str] | None = None
    delete_all: bool = False


def parse_sync_body(kind: Kind, body: bytes, *, max_ids: int) -> SyncOptions:
    """Validate a POST /sync/<kind> body. Raises BadRequest with a message naming the problem."""
    data = parse_json_object(body)
    if kind in PARTIAL:
        ids = data.get("ids")
        if isinstance(ids, list) and len(ids) > max_ids:
            raise BadRequest(f"ids has {len(ids)} items; at most {max_ids} per request")
        try:
            parsed = PartialSyncBody.model_validate(data)
        except ValidationError as exc:
            raise BadRequest(_describe(exc, ["ids"])) from None
        size = sum(len(i.encode("utf-8")) + 1 for i in parsed.ids or ())
        if size > MAX_IDS_BYTES:  # else the store's write fails: a 500 for a valid-looking body
            raise BadRequest(f"ids take {size} bytes (UTF-8); at most {MAX_IDS_BYTES} per "
                             "request: send fewer per request")
        return SyncOptions(ids=parsed.ids)
    try:
        options = DeleteAllBody.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(_describe(exc, ["deleteAll", "confirmDeletion"])) from None
    if options.deleteAll:
        if kind not in DELETABLE:
            raise BadRequest(f"deleteAll is not available for {kind}")
        if options.confirmDeletion != kind:
            raise BadRequest(
                f"deleteAll first deletes ALL {kind} in the Klaviyo catalog; to confirm, send "
                f'"confirmDeletion": "{kind}"'
            )
    elif options.confirmDeletion is not None:
        raise BadRequest('confirmDeletion is only accepted with "deleteAll": true')
    return SyncOptions(delete_all=options.deleteAll)


# ---- routing ---------------------------------------------------------------------------------


def status_view(job: Job, now: datetime) -> dict[str, Any]:
    view = job.public()
    view["leaseExpired"] = bool(job.live and job.leaseExpiresAt is not None
                                and job.leaseExpiresAt <= now)
    view["statusUrl"] = f"/sync/jobs/{job.id}"
    view["progress"] = progress(job, now)
    return view


class BulkApi:
    def __init__(
        self,
        runner: Runner,
        *,
        max_ids: int = 10_000,
        max_body_bytes: int = 2 * 1024 * 1024,
        clock: Callable[[], datetime] = utcnow,
        auth: AuthMode = "none",
        callers: tuple[str, ...] = (),
        admins: tuple[str, ...] = (),
    ) -> None:
        self.runner = runner
        self.max_ids = max_ids
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.auth = auth
        self.admins = frozenset(a.strip().lower() for a in admins if a.strip())
        self.callers = frozenset(a.strip().lower() for a in callers if a.strip()) | self.admins

    @classmethod
    def from_settings(cls, runner: Runner, settings: Any) -> BulkApi:
        return cls(runner, max_ids=settings.bulk_max_ids,
                   max_body_bytes=settings.bulk_max_body_bytes, auth=settings.bulk_auth,
                   callers=tuple(settings.bulk_callers), admins=tuple(settings.bulk_admins))

    def may_call(self, caller: Caller) -> bool:
        if self.auth == "none" or not caller.verified:  # local, or the gateway checked the key
            return True
        return listed(caller.principal, self.callers)

    def may_delete_all(self, caller: Caller) -> bool:
        """Without a gateway (local) the confirmation guards deleteAll; behind it, BULK_ADMINS.
        While the gateway also takes an API key, a key holder could send any user info header
        along with the key (nothing here can tell), so then nobody may use deleteAll."""
        if self.auth == "none":
            return True
        return self.auth == "id-token" and caller.verified and listed(caller.principal,
                                                                      self.admins)

    def too_large(self) -> Response:
        return _error(413, "payload_too_large",
                      f"body is larger than {self.max_body_bytes} bytes")

    def handle(self, method: str, path: str, body: bytes = b"",
               headers: HeaderItems | None = None) -> Response:
        method = method.upper()
        try:
            caller = identify(self.auth, headers or {})
        except Unauthenticated as exc:
            log.warning("bulk api caller not authenticated", method=method, path=path[:80],
                        reason=str(exc))
            return _error(401, "unauthenticated", str(exc))
        if not self.may_call(caller):
            log.warning("bulk audit", action="call", caller=caller.principal, method=method,
                        path=path[:80], outcome="forbidden")
            return _error(403, "forbidden", f"{caller.principal} may not call this API: add it to "
                          "BULK_CALLERS (or BULK_ADMINS) and redeploy")
        try:
            if len(body) > self.max_body_bytes:
                return self.too_large()
            return self._route(method, path, body, caller)
        except BadRequest as exc:
            return _error(400, "bad_request", str(exc))
        except Exception as exc:
            log.error("bulk api request failed", method=method, error=type(exc).__name__)
            return _error(500, "internal", "internal error; see the function's logs")

    def _route(self, method: str, path: str, body: bytes, caller: Caller) -> Response:
        parts = [p for p in path.split("/") if p]
        if len(parts) < 2 or parts[0] != "sync":
            return _error(404, "not_found", "unknown path")
        if parts[1] == "jobs":
            if len(parts) != 3:
                return _error(404, "not_found", "unknown path")
            return self._allow(method, ("GET",)) or self._get_job(parts[2])
        kind = parts[1]
        if kind not in KINDS:
            return _error(404, "not_found", f"unknown kind {kind[:40]!r}; one of "
                          f"{', '.join(KINDS)}")
        if len(parts) == 2:
            allowed = self._allow(method, ("GET", "POST"))
            if allowed:
                return allowed
            if method in ("GET", "HEAD"):
                return self._latest(kind)
            return self._start(kind, body, caller)
        if len(parts) == 3 and parts[2] == "stop":
            return (self._allow(method, ("POST",))
                    or self._stop(kind, caller))
        return _error(404, "not_found", "unknown path")

    @staticmethod
    def _allow(method: str, methods: tuple[str, ...]) -> Response | None:
        accepted = methods + (("HEAD",) if "GET" in methods else ())
        if method in accepted:
            return None
        response = _error(405, "method_not_allowed",
                          f"{method} is not allowed here; use {' or '.join(methods)}")
        response.headers["Allow"] = ", ".join(accepted)
        return response

    def _start(self, kind: Kind, body: bytes, caller: Caller) -> Response:
        options = parse_sync_body(kind, body, max_ids=self.max_ids)
        action = "deleteAll" if options.delete_all else "start"
        audit = {"action": action, "caller": caller.principal, "kind": kind,
                 "options": {"deleteAll": options.delete_all,
                             "idCount": len(options.ids) if options.ids is not None else None}}
        if options.delete_all and not self.may_delete_all(caller):
            log.warning("bulk audit", outcome="forbidden", **audit)
            why = (f"{caller.principal} is not in BULK_ADMINS" if self.auth == "id-token" else
                   "not while the gateway also accepts an API key (deploy without --api-key)")
            return _error(403, "forbidden", f"deleteAll deletes every Klaviyo {kind} object "
                          f"and needs an admin: {why}")
        try:
            job = self.runner.start(kind, ids=options.ids, delete_all=options.delete_all,
                                    started_by=caller.principal)
        except Conflict as exc:
            log.info("bulk audit", outcome="conflict", jobId=exc.job_id, **audit)
            return _error(409, "conflict", f"a {kind} sync is already running", jobId=exc.job_id,
                          statusUrl=f"/sync/jobs/{exc.job_id}")
        except EnqueueError as exc:
            log.info("bulk audit", outcome="unavailable", jobId=exc.job.id, **audit)
            return _error(503, "unavailable", "the job could not be queued; try again",
                          jobId=exc.job.id)
        log.info("bulk audit", outcome="started", jobId=job.id, **audit)
        url = f"/sync/jobs/{job.id}"
        return Response(202, {"jobId": job.id, "kind": kind, "status": job.status.value,
                              "statusUrl": url}, {"Location": url})

    def _stop(self, kind: Kind, caller: Caller) -> Response:
        job = self.runner.stop(kind, by=caller.principal)
        log.info("bulk audit", action="stop", caller=caller.principal, kind=kind,
                 jobId=job.id if job else None, outcome="stopping" if job else "not_running")
        if job is None:
            return _error(404, "not_found", f"no {kind} sync is running")
        message = ("the job stops after its current batch" if job.live
                   else f"the job has ended: {job.status.value}")
        return Response(200, {**status_view(job, self.clock()), "message": message})

    def _latest(self, kind: Kind) -> Response:
        job = self.runner.latest(kind)
        if job is None:
            return _error(404, "not_found", f"no {kind} sync has run yet")
        return Response(200, status_view(job, self.clock()))

    def _get_job(self, job_id: str) -> Response:
        job = self.runner.job(job_id) if _JOB_ID.match(job_id) else None
        if job is None:
            return _error(404, "not_found", "unknown job id")
        return Response(200, status_view(job, self.clock()))
