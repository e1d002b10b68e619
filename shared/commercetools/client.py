"""Read-only commercetools client returning raw JSON dicts exactly as commercetools sends them.

Requests go through `auth.CommercetoolsSession` (the SDK's OAuth session for the token, a pooled
`requests` session for the calls). Every call is retried on transport errors, timeouts, 429 and
5xx with `shared.retry.call_with_retry`, bounded by the caller's Deadline; a 401 renews the token
once. Values placed in `where` predicates always go through `predicate_string`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import SecretStr

from shared.commercetools.auth import CommercetoolsSession, error_from
from shared.config import Settings
from shared.deadline import Deadline
from shared.errors import CommercetoolsError, ConnectorError, DeadlineExceeded
from shared.http import HttpFailure, InvalidRequest, chunks_within, parse_json
from shared.log import get_logger
from shared.retry import call_with_retry

log = get_logger("commercetools")

USER_AGENT = "ct-klaviyo-connector/0.1 (+commercetools-klaviyo sync)"
_ACCEPT_JSON = {"Accept": "application/json"}

RESOURCES = frozenset(
    {
        "customers",
        "orders",
        "payments",
        "products",
        "categories",
        "inventory",
        "carts",
        "product-projections",
    }
)
MAX_LIMIT = 500
# Bound on the URL-encoded `where` of one get_by_ids request (URLs beyond ~8 KB get rejected).
_MAX_IDS_WHERE_CHARS = 4000

Json = dict[str, Any]


def predicate_string(value: str) -> str:
    """`value` as a quoted commercetools predicate string literal (backslash and quote escaped)."""
    if not isinstance(value, str):
        raise TypeError(f"predicate value must be a str, not {type(value).__name__}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CommercetoolsClient:
    def __init__(
        self,
        *,
        project_key: str,
        client_id: str,
        client_secret: str | SecretStr,
        api_url: str,
        auth_url: str,
        scopes: Sequence[str] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 8,
        backoff_base: float = 0.25,
        backoff_cap: float = 8.0,
    ) -> None:
        if isinstance(client_secret, SecretStr):
            client_secret = client_secret.get_secret_value()
        self.project_key = project_key
        self._base_url = api_url.rstrip("/")
        self._timeout = (connect_timeout, read_timeout)
        self._retry: dict[str, Any] = {"max_attempts": max_attempts, "base": backoff_base,
                                       "cap": backoff_cap}
        # No network I/O here: the first token is fetched by the first request.
        self.session = CommercetoolsSession(
            api_url=self._base_url,
            auth_url=auth_url,
            user_agent=USER_AGENT,
            client_id=client_id,
            client_secret=client_secret,
            scopes=list(scopes or [f"manage_project:{project_key}"]),
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> CommercetoolsClient:
        return cls(
            project_key=settings.ctp_project_key,
            client_id=settings.ctp_client_id,
            client_secret=settings.ctp_client_secret,
            api_url=settings.ctp_api_url,
            auth_url=settings.ctp_auth_url,
            scopes=settings.ct_scopes,
            **kwargs,
        )

    # ---- by id --------------------------------------------------------------------------

    def get_customer(self, id: str, *, deadline: Deadline = Deadline.never()) -> Json | None:
        return self.get_by_id("customers", id, deadline=deadline)

    def get_order(self, id: str, *, deadline: Deadline = Deadline.never()) -> Json | None:
        return self.get_by_id("orders", id, deadline=deadline)

    def get_payment(self, id: str, *, deadline: Deadline = Deadline.never()) -> Json | None:
        return self.get_by_id("payments", id, deadline=deadline)

    def get_product(self, id: str, *, deadline: Deadline = Deadline.never()) -> Json | None:
        """The full Product (`masterData.current` and `masterData.staged`)."""
        return self.get_by_id("products", id, deadline=deadline)

    def get_category(self, id: str, *, deadline: Deadline = Deadline.never()) -> Json | None:
        """The Category with `ancestors[*].obj` expanded, so ancestor names are available."""
        return self.get_by_id("categories", id, expand=("ancestors[*]",), deadline=deadline)

    def get_inventory_entry(self, id: str, *, deadline: Deadline = Deadline.never()) -> Json | None:
        return self.get_by_id("inventory", id, deadline=deadline)

    def get_cart(self, id: str, *, deadline: Deadline = Deadline.never()) -> Json | None:
        return self.get_by_id("carts", id, deadline=deadline)

    def get_by_id(
        self,
        resource: str,
        id: str,
        *,
        expand: Sequence[str] = (),
        deadline: Deadline = Deadline.never(),
    ) -> Json | None:
        """`GET /{project}/{resource}/{id}`; None when commercetools answers 404."""
        self._check_resource(resource)
        if not id:
            raise ValueError("id must not be empty")
        path = f"/{resource}/{urllib.parse.quote(id, safe='')}"
        params = [("expand", e) for e in expand]
        return self._get(path, params, deadline, resource, none_on_404=True)

    # ---- queries ------------------------------------------------------------------------

    def find_order_by_payment_id(
        self, payment_id: str, *, deadline: Deadline = Deadline.never()
    ) -> Json | None:
        where = f"paymentInfo(payments(id={predicate_string(payment_id)}))"
        page = self._query("orders", [("where", where), ("limit", "1"), ("withTotal", "false")],
                           deadline)
        return page[0] if page else None

    def get_by_ids(
        self,
        resource: str,
        ids: Sequence[str],
        *,
        expand: Sequence[str] = (),
        deadline: Deadline = Deadline.never(),
    ) -> list[Json]:
        """The documents with these ids, in the order asked (ids not found are left out)."""
        self._check_resource(resource)
        unique = list(dict.fromkeys(ids))
        found: dict[str, Json] = {}
        for chunk in _chunk_ids(unique):
            where = "id in (" + ", ".join(predicate_string(i) for i in chunk) + ")"
            params = [("where", where), ("limit", str(len(chunk))), ("withTotal", "false")]
            params += [("expand", e) for e in expand]
            for doc in self._query(resource, params, deadline):
                found[doc["id"]] = doc
        return [found[i] for i in unique if i in found]

    def get_products_current(
        self, ids: Sequence[str], *, deadline: Deadline = Deadline.never()
    ) -> list[Json]:
        """Products by id, shaped like Product documents that hold only `masterData.current`.

        Published products come from product-projections (the current data alone: about half
        the bytes of a Product, which also carries `staged`); the rest (unpublished now, yet
        ordered earlier) from products. Ids not found are left out.
        """
        unique = list(dict.fromkeys(ids))
        found = {p["id"]: {"id": p["id"], "key": p.get("key"),
                           "masterData": {"published": True, "current": p}}
                 for p in self.get_by_ids("product-projections", unique, deadline=deadline)}
        rest = [i for i in unique if i not in found]
        if rest:
            for product in self.get_by_ids("products", rest, deadline=deadline):
                found[product["id"]] = product
        return [found[i] for i in unique if i in found]

    def query_page(
        self,
        resource: str,
        *,
        after: str | None,
        limit: int = MAX_LIMIT,
        where: Sequence[str] = (),
        expand: Sequence[str] = (),
        deadline: Deadline = Deadline.never(),
    ) -> list[Json]:
        """One keyset page: `sort=id asc`, ids greater than `after`, at most `limit` results.

        `where` clauses are predicates built by the caller (quote values with predicate_string);
        commercetools ANDs repeated `where` parameters.
        """
        self._check_resource(resource)
        if isinstance(where, str):
            raise TypeError("where must be a sequence of predicates, not a str")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit!r}")
        params: list[tuple[str, str]] = [("sort", "id asc"), ("limit", str(limit)),
                                         ("withTotal", "false")]
        if after is not None:
            params.append(("where", f"id > {predicate_string(after)}"))
        params += [("where", w) for w in where]
        params += [("expand", e) for e in expand]
        return self._query(resource, params, deadline)

    def iter_pages(
        self,
        resource: str,
        *,
        limit: int = MAX_LIMIT,
        where: Sequence[str] = (),
        expand: Sequence[str] = (),
        start_after: str | None = None,
        deadline: Deadline = Deadline.never(),
    ) -> Iterator[list[Json]]:
        """Yield keyset pages until one is shorter than `limit` (an empty page is not yielded)."""
        after = start_after
        while True:
            page = self.query_page(resource, after=after, limit=limit, where=where,
                                   expand=expand, deadline=deadline)
            if page:
                yield page
            if len(page) < limit:
                return
            after = page[-1]["id"]

    def count(
        self, resource: str, *, where: Sequence[str] = (), deadline: Deadline = Deadline.never()
    ) -> int:
        """How many documents match (`withTotal=true` on a one-result query): a bulk job's total."""
        self._check_resource(resource)
        params = [("limit", "1"), ("withTotal", "true")] + [("where", w) for w in where]
        body = self._get(f"/{resource}", params, deadline, resource, none_on_404=False)
        total = body.get("total") if isinstance(body, dict) else None
        if isinstance(total, bool) or not isinstance(total, int):
            raise CommercetoolsError(f"commercetools {resource} query: no total",
                                     status=200, retryable=False)
        return total

    # ---- transport ----------------------------------------------------------------------

    @staticmethod
    def _check_resource(resource: str) -> None:
        if resource not in RESOURCES:
            raise ValueError(f"unknown commercetools resource {resource!r}")

    def _query(
        self, resource: str, params: list[tuple[str, str]], deadline: Deadline
    ) -> list[Json]:
        body = self._get(f"/{resource}", params, deadline, resource, none_on_404=False)
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            # A 2xx that is not what commercetools documents says nothing about the records:
            # an outage (a proxy, a half-deployed API), so retried and redelivered.
            raise CommercetoolsError(f"commercetools {resource} query: no results list",
                                     status=200, retryable=True)
        return results

    def _get(
        self,
        path: str,
        params: list[tuple[str, str]],
        deadline: Deadline,
        resource: str,
        *,
        none_on_404: bool,
    ) -> Any:
        url = f"{self._base_url}/{self.project_key}{path}"

        def attempt() -> Any:
            return self._get_once(url, params, deadline, resource, none_on_404)

        def on_retry(n: int, exc: ConnectorError, delay: float) -> None:
            fields = exc.log_fields() if isinstance(exc, CommercetoolsError) else {}
            log.warning("commercetools request retried", resource=resource, attempt=n,
                        delaySeconds=round(delay, 3), error=type(exc).__name__, **fields)

        return call_with_retry(attempt, deadline=deadline, on_retry=on_retry, **self._retry)

    def _timeout_for(self, deadline: Deadline) -> tuple[float, float]:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise DeadlineExceeded("deadline reached before the commercetools request")
        return (min(self._timeout[0], remaining), min(self._timeout[1], remaining))

    def _get_once(self, url: str, params: list[tuple[str, str]], deadline: Deadline,
                  resource: str, none_on_404: bool) -> Any:
        """One GET of `url` (`_get`'s attempt): the answer's JSON, None for a 404 when asked."""
        try:
            response = self.session.request("GET", url, params=params, headers=_ACCEPT_JSON,
                                            timeout=lambda: self._timeout_for(deadline))
        except InvalidRequest as exc:
            raise CommercetoolsError(f"commercetools {resource}: {exc}", status=None,
                                     code="invalid_request", retryable=False) from exc
        except HttpFailure as exc:
            what = "timed out" if exc.timed_out else f"transport error: {exc}"
            raise CommercetoolsError(f"commercetools {resource} request {what}",
                                     status=None) from exc

        if response.status_code == 404 and none_on_404:
            return None
        if response.status_code >= 400:
            raise error_from(response, resource)
        try:
            return parse_json(response.content)
        except ValueError as exc:
            raise CommercetoolsError(f"commercetools {resource}: response is not JSON",
                                     status=response.status_code, retryable=True) from exc


def _chunk_ids(ids: list[str]) -> Iterator[list[str]]:
    """Split ids so each `id in (...)` stays under the URL budget and the 500 limit."""
    # Fast path: escaping then URL-encoding turns one character into at most six (`"` → `%5C%22`),
    # so a short list fits without measuring each id exactly (a realtime order's few products).
    if not ids:
        return
    if len(ids) <= MAX_LIMIT and sum(len(i) + 4 for i in ids) * 6 + 8 <= _MAX_IDS_WHERE_CHARS:
        yield ids
        return
    yield from chunks_within(
        ids, lambda id_: len(urllib.parse.quote_plus(predicate_string(id_) + ", ")),
        max_items=MAX_LIMIT, max_chars=_MAX_IDS_WHERE_CHARS, base_chars=len("id in ()"))
