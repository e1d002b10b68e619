"""A small fake of the commercetools HTTP API (the endpoints the connector reads), plus fixtures.

Not the SDK's `commercetools.testing` backend: that one ignores sort/offset/withTotal, breaks on
any paged request in server mode and lowercases string comparisons. This fake is strict instead:
a predicate, sort or expand it does not understand is a 400 `InvalidInput`, so a test notices.

Served over real HTTP on 127.0.0.1 (free port, daemon thread). Endpoints:
  POST /oauth/token                         client_credentials, HTTP Basic client auth
  GET  /{projectKey}/{resource}/{id}        404 ResourceNotFound when missing
  GET  /{projectKey}/{resource}             where (repeatable, ANDed), sort=id asc|desc,
                                            limit (default 20, max 500), offset, withTotal, expand
Resources: customers, orders, payments, products, categories, inventory, carts, and the derived
product-projections (current published data of `products`; `staged=true` for staged data).
Subscriptions: GET/POST/DELETE by key, as tests/fakes/ct_subscriptions.py documents.

Predicates: `and` of `field op "string"` (op: = != > >= < <=), `field = true|false` (and !=),
`field in ("a", "b")` and nested
`field(predicate)` (any element when the field is a list), e.g. `paymentInfo(payments(id="x"))`.
`or` between them (`and` binds tighter). String literals honour backslash escapes. Anything else
(not, numbers, is defined) → 400.

Expand: reference paths like `ancestors[*]`, `parent`, `paymentInfo.payments[*]`: each reference
`{"typeId","id"}` gains `"obj"` when the target is stored; a path going on past a reference
continues in its expanded object (`categories[*].ancestors[*]`).

Fixtures (load with `pytest_plugins = ["tests.fakes.commercetools"]`): `ct_server` (session),
`ct` (reset, per test), `ct_client` (CommercetoolsClient pointed at the fake), `ct_env` (CTP_*).
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

STORED_RESOURCES = (
    "customers", "orders", "payments", "products", "categories", "inventory", "carts"
)
RESOURCES = STORED_RESOURCES + ("product-projections",)
TYPE_TO_RESOURCE = {
    "customer": "customers",
    "order": "orders",
    "payment": "payments",
    "product": "products",
    "category": "categories",
    "inventory-entry": "inventory",
    "cart": "carts",
}
MAX_LIMIT, MAX_OFFSET, DEFAULT_LIMIT = 500, 10_000, 20


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ct_error(status: int, code: str, message: str, **extra: Any) -> Response:
    body = {"statusCode": status, "message": message,
            "errors": [{"code": code, "message": message}], **extra}
    return Response(_dumps(body), status=status, content_type="application/json")


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, separators=(",", ":"))


class InvalidInput(ValueError):
    """The request uses something the fake (deliberately) does not support."""


# ---- predicates -----------------------------------------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>>=|<=|!=|=|>|<)|(?P<punct>[(),])'
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<other>\S))"
)
_KEYWORDS = {"and", "or", "not", "in", "is", "defined", "empty", "contains", "within"}


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind is None:
            continue
        value = m.group(kind)
        if kind == "other":
            raise InvalidInput(f"unsupported character {value!r} in predicate")
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.S)
        tokens.append((kind, value))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def parse(self) -> tuple:
        node = self.disj()
        if self.pos != len(self.tokens):
            raise InvalidInput(f"unsupported predicate near {self.tokens[self.pos][1]!r}")
        return node

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        tok = self.peek()
        if tok is None or tok[0] != kind or (value is not None and tok[1].lower() != value):
            raise InvalidInput(f"expected {value or kind}, got {tok[1] if tok else 'end'!r}")
        self.pos += 1
        return tok[1]

    def disj(self) -> tuple:
        parts = [self.conj()]
        while (tok := self.peek()) and tok[0] == "ident" and tok[1].lower() == "or":
            self.pos += 1
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def conj(self) -> tuple:
        parts = [self.atom()]
        while (tok := self.peek()) and tok[0] == "ident" and tok[1].lower() == "and":
            self.pos += 1
            parts.append(self.atom())
        return ("and", parts)

    def atom(self) -> tuple:
        tok = self.peek()
        if tok == ("punct", "("):
            self.pos += 1
            node = self.disj()
            self.take("punct", ")")
            return node
        name = self.take("ident")
        if name.lower() in _KEYWORDS:
            raise InvalidInput(f"unsupported predicate keyword {name!r}")
        tok = self.peek()
        if tok == ("punct", "("):
            self.pos += 1
            inner = self.disj()
            self.take("punct", ")")
            return ("nested", name, inner)
        if tok and tok[0] == "op":
            self.pos += 1
            literal = self.peek()
            if tok[1] in ("=", "!=") and literal in (("ident", "true"), ("ident", "false")):
                self.pos += 1  # boolean literal, e.g. masterData(published = true)
                return ("cmp", name, tok[1], literal[1] == "true")
            return ("cmp", name, tok[1], self.take("str"))
        if tok and tok[0] == "ident" and tok[1].lower() == "in":
            self.pos += 1
            self.take("punct", "(")
            values = [self.take("str")]
            while self.peek() == ("punct", ","):
                self.pos += 1
                values.append(self.take("str"))
            self.take("punct", ")")
            return ("in", name, values)
        raise InvalidInput(f"unsupported predicate after {name!r}")


_OPS = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}


def _matches(node: tuple, doc: Any) -> bool:
    if not isinstance(doc, dict):
        return False
    kind = node[0]
    if kind == "and":
        return all(_matches(n, doc) for n in node[1])
    if kind == "or":
        return any(_matches(n, doc) for n in node[1])
    value = doc.get(node[1])
    if kind == "nested":
        items = value if isinstance(value, list) else [value]
        return any(_matches(node[2], item) for item in items)
    if kind == "cmp" and isinstance(node[3], bool):
        return isinstance(value, bool) and _OPS[node[2]](value, node[3])
    if not isinstance(value, str):  # only string fields are compared (literals are strings)
        return False
    if kind == "in":
        return value in node[2]
    return _OPS[node[2]](value, node[3])


def parse_predicate(text: str) -> tuple:
    """Parse a where predicate (raises InvalidInput); exposed for tests of the fake itself."""
    return _Parser(text).parse()


# ---- the fake -------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class _Fault:
    status: int
    times: int | None  # None: forever
    path: str | None
    retry_after: float | None


_FAULT_CODES = {429: "TooManyRequests", 500: "General", 502: "BadGateway",
                503: "ServiceUnavailable", 504: "GatewayTimeout"}


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class FakeCommercetools:
    project_key: str = "test-project"
    client_id: str = "fake-client-id"
    client_secret: str = "fake-client-secret"
    token_expires_in: int = 172_800
    _store: dict[str, dict[str, dict]] = field(default_factory=dict, repr=False)
    _tokens: dict[str, float] = field(default_factory=dict, repr=False)
    _requests: list[RecordedRequest] = field(default_factory=list, repr=False)
    _faults: list[_Fault] = field(default_factory=list, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _server: Any = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.reset()

    # -- lifecycle --
    def start(self) -> FakeCommercetools:
        self._server = make_server("127.0.0.1", 0, self, threaded=True,
                                   request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="fake-commercetools", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeCommercetools is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def auth_url(self) -> str:
        return self.url  # the token endpoint is {auth_url}/oauth/token, as in commercetools

    @property
    def scopes(self) -> list[str]:
        return [f"manage_project:{self.project_key}"]

    def reset(self) -> None:
        with self._lock:
            self._store = {r: {} for r in STORED_RESOURCES}
            self._subscriptions: dict[str, dict] = {}  # see tests/fakes/ct_subscriptions.py
            self._tokens.clear()
            self._requests.clear()
            self._faults.clear()
            self.token_expires_in = 172_800
            # Seeded random faults (tests.fakes.chaos.RandomFaults, statuses only); None: off.
            self.random_faults: Any = None

    # -- data --
    def add(self, resource: str, doc: dict[str, Any]) -> dict[str, Any]:
        """Store (insert or replace) a raw JSON document; fills id/version/timestamps if absent."""
        if resource not in STORED_RESOURCES:
            raise ValueError(f"cannot store {resource!r} (projections derive from products)")
        doc = copy.deepcopy(doc)
        doc.setdefault("id", str(uuid.uuid4()))
        doc.setdefault("version", 1)
        now = _now()
        doc.setdefault("createdAt", now)
        doc.setdefault("lastModifiedAt", doc["createdAt"])
        with self._lock:
            self._store[resource][doc["id"]] = doc
        return copy.deepcopy(doc)

    put = add

    def delete(self, resource: str, id: str) -> None:
        with self._lock:
            self._store[resource].pop(id, None)

    def get(self, resource: str, id: str) -> dict[str, Any] | None:
        with self._lock:
            if resource == "product-projections":
                product = self._store["products"].get(id)
                return _projection(product, staged=False) if product else None
            doc = self._store[resource].get(id)
            return copy.deepcopy(doc) if doc is not None else None

    # -- observation / faults / auth --
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def api_requests(self, resource: str | None = None) -> list[RecordedRequest]:
        """Recorded API (non-token) requests, optionally only those for one resource."""
        prefix = f"/{self.project_key}/" + (resource or "")
        return [r for r in self.requests if r.path.startswith(prefix)
                and (resource is None or r.path[len(prefix):len(prefix) + 1] in ("", "/"))]

    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/oauth/token"]

    def inject(self, status: int, *, times: int | None = 1, path: str | None = None,
               retry_after: float | None = None) -> None:
        """Answer the next `times` matching requests (None: all) with `status` and a CT error.

        `path` is a substring of the request path; without it, every API request matches (the
        token endpoint only when `path` names it).
        """
        with self._lock:
            self._faults.append(_Fault(status, times, path, retry_after))

    def expire_tokens(self) -> None:
        """Invalidate every issued token (the client must fetch a new one)."""
        with self._lock:
            self._tokens.clear()

    # -- WSGI --
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except InvalidInput as exc:
            response = ct_error(400, "InvalidInput", str(exc))
        return response(environ, start_response)

    def _dispatch(self, req: Request) -> Response:
        with self._lock:
            query = req.args.to_dict(flat=False)
            self._requests.append(RecordedRequest(req.method, req.path, query))
            fault = self._take_fault(req.path)
        if fault is None and self.random_faults is not None and req.path != "/oauth/token":
            chaos = self.random_faults
            draw = chaos.draw(chaos.request_key(req.method, req.path, req.args.to_dict()))
            if draw is not None and draw.status is not None:
                fault = _Fault(draw.status, 1, None, draw.retry_after)
        if fault is not None:
            response = ct_error(fault.status, _FAULT_CODES.get(fault.status, "General"),
                                f"injected {fault.status}")
            if fault.retry_after is not None:
                seconds = fault.retry_after
                response.headers["Retry-After"] = str(int(seconds) if seconds == int(seconds)
                                                      else seconds)
            return response
        if req.path == "/oauth/token":
            return self._token(req)
        if not self._authorized(req):
            return ct_error(401, "invalid_token", "invalid_token", error="invalid_token")
        parts = req.path.strip("/").split("/")
        if parts[:2] == [self.project_key, "subscriptions"]:
            from tests.fakes.ct_subscriptions import handle

            return handle(self, req, parts[2:])
        if req.method != "GET":
            return ct_error(405, "MethodNotAllowed", "the fake only serves GET")
        if parts[0] != self.project_key or len(parts) not in (2, 3) or parts[1] not in RESOURCES:
            return ct_error(404, "ResourceNotFound", "Not found")
        if len(parts) == 3:
            return self._get_by_id(req, parts[1], parts[2])
        return self._query(req, parts[1])

    def _take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            applies = fault.path in path if fault.path else path != "/oauth/token"
            if applies:
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def _token(self, req: Request) -> Response:
        if req.method != "POST":
            return ct_error(405, "MethodNotAllowed", "POST only")
        auth = req.authorization
        if auth is None or auth.type != "basic" or (auth.username, auth.password) != (
            self.client_id, self.client_secret
        ):
            return ct_error(401, "invalid_client", "Please provide valid client credentials "
                            "using HTTP Basic Authentication.", error="invalid_client")
        if req.form.get("grant_type") != "client_credentials":
            return ct_error(400, "unsupported_grant_type", "unsupported grant type",
                            error="unsupported_grant_type")
        scope = req.form.get("scope") or " ".join(self.scopes)
        if any(not s.endswith(f":{self.project_key}") for s in scope.split()):
            return ct_error(400, "invalid_scope", "invalid scope", error="invalid_scope")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_expires_in
        body = {"access_token": token, "token_type": "Bearer",
                "expires_in": self.token_expires_in, "scope": scope}
        return Response(_dumps(body), content_type="application/json")

    def _authorized(self, req: Request) -> bool:
        header = req.headers.get("Authorization", "")
        if not header.lower().startswith("bearer "):
            return False
        with self._lock:
            expires = self._tokens.get(header[7:].strip())
        return expires is not None and expires > time.monotonic()

    def _docs(self, resource: str, req: Request, predicates: Sequence[tuple] = (),
              id: str | None = None) -> list[dict]:
        """The stored documents of `resource` that match (projections are derived), not
        copied: callers copy, under the lock, only what they answer (copying every match per
        request made a fake with a few thousand documents the bottleneck of soaks and bench)."""
        with self._lock:
            if resource == "product-projections":
                staged = (req.args.get("staged") or "false").lower() == "true"
                products = self._store["products"]
                by_ids = next((n[2] for n in predicates if n[0] == "in" and n[1] == "id"), None)
                if id is not None:
                    by_ids = [id]
                candidates = (products.values() if by_ids is None
                              else [products[i] for i in by_ids if i in products])
                docs = [_projection(p, staged=staged, deep=False) for p in candidates]
                return [d for d in docs
                        if d is not None and all(_matches(p, d) for p in predicates)]
            stored = self._store[resource]
            candidates = ([stored[id]] if id in stored else []) if id is not None \
                else stored.values()
            return [d for d in candidates if all(_matches(p, d) for p in predicates)]

    def _get_by_id(self, req: Request, resource: str, id: str) -> Response:
        with self._lock:
            docs = copy.deepcopy(self._docs(resource, req, id=id)[:1])
        if not docs:
            return ct_error(404, "ResourceNotFound",
                            f"The Resource with ID '{id}' was not found.")
        return Response(_dumps(self._expand(docs[0], req.args.getlist("expand"))),
                        content_type="application/json")

    def _query(self, req: Request, resource: str) -> Response:
        limit = _int_param(req, "limit", DEFAULT_LIMIT, 0, MAX_LIMIT)
        offset = _int_param(req, "offset", 0, 0, MAX_OFFSET)
        with_total = (req.args.get("withTotal") or "true").lower()
        if with_total not in ("true", "false"):
            raise InvalidInput("withTotal must be true or false")
        predicates = [parse_predicate(w) for w in req.args.getlist("where")]
        docs = self._docs(resource, req, predicates)
        for sort in reversed(req.args.getlist("sort")):
            m = re.fullmatch(r"\s*id\s+(asc|desc)\s*", sort)
            if not m:
                raise InvalidInput(f"the fake only sorts by id, not {sort!r}")
            docs.sort(key=lambda d: d["id"], reverse=m.group(1) == "desc")
        with self._lock:
            page = copy.deepcopy(docs[offset:offset + limit])
        expand = req.args.getlist("expand")
        body: dict[str, Any] = {"limit": limit, "offset": offset, "count": len(page)}
        if with_total == "true":
            body["total"] = len(docs)
        body["results"] = [self._expand(d, expand) for d in page]
        return Response(_dumps(body), content_type="application/json")

    def _expand(self, doc: dict, paths: list[str]) -> dict:
        for path in paths:
            if not re.fullmatch(r"[A-Za-z]\w*(\[\*\])?(\.[A-Za-z]\w*(\[\*\])?)*", path):
                raise InvalidInput(f"unsupported expand {path!r}")
            self._expand_path(doc, path.split("."))
        return doc

    def _expand_path(self, node: Any, segments: list[str]) -> None:
        if not segments or not isinstance(node, dict):
            return
        name = segments[0].removesuffix("[*]")
        value = node.get(name)
        items = value if segments[0].endswith("[*]") and isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, dict):
                continue
            is_reference = isinstance(item.get("typeId"), str) and isinstance(item.get("id"), str)
            if is_reference and "obj" not in item:
                target = self.get(TYPE_TO_RESOURCE.get(item["typeId"], ""), item["id"]) \
                    if item["typeId"] in TYPE_TO_RESOURCE else None
                if target is not None:
                    item["obj"] = target
            if len(segments) > 1:
                # Past a reference the path goes on in the expanded object, as commercetools'
                # nested expansion does (`categories[*].ancestors[*]`).
                self._expand_path(item["obj"] if is_reference and "obj" in item else item,
                                  segments[1:])


def _int_param(req: Request, name: str, default: int, low: int, high: int) -> int:
    raw = req.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}")
    return value


def _projection(product: dict, *, staged: bool, deep: bool = True) -> dict | None:
    master = product.get("masterData") or {}
    if not staged and not master.get("published"):
        return None
    data = master.get("staged" if staged else "current") or {}
    projection = {k: v for k, v in product.items() if k != "masterData"}
    projection.update(data)
    projection["published"] = bool(master.get("published"))
    projection["hasStagedChanges"] = bool(master.get("hasStagedChanges"))
    return copy.deepcopy(projection) if deep else projection


def basic_auth(client_id: str, client_secret: str) -> str:
    """An `Authorization: Basic` header value (for tests calling /oauth/token by hand)."""
    return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()


# ---- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ct_server() -> Iterator[FakeCommercetools]:
    fake = FakeCommercetools().start()
    yield fake
    fake.stop()


@pytest.fixture
def ct(ct_server: FakeCommercetools) -> Iterator[FakeCommercetools]:
    ct_server.reset()
    yield ct_server


@pytest.fixture
def ct_client(ct: FakeCommercetools) -> Any:
    from shared.commercetools import CommercetoolsClient

    # Short backoff and timeouts keep retry tests fast; Retry-After is still honoured.
    return CommercetoolsClient(
        project_key=ct.project_key,
        client_id=ct.client_id,
        client_secret=ct.client_secret,
        api_url=ct.url,
        auth_url=ct.auth_url,
        scopes=ct.scopes,
        connect_timeout=2.0,
        read_timeout=5.0,
        backoff_base=0.02,
        backoff_cap=0.2,
    )


@pytest.fixture
def ct_env(ct: FakeCommercetools) -> dict[str, str]:
    """CTP_* environment variables pointing at the fake (for end-to-end tests)."""
    return {
        "CTP_PROJECT_KEY": ct.project_key,
        "CTP_CLIENT_ID": ct.client_id,
        "CTP_CLIENT_SECRET": ct.client_secret,
        "CTP_SCOPES": " ".join(ct.scopes),
        "CTP_API_URL": ct.url,
        "CTP_AUTH_URL": ct.auth_url,
    }
