"""HTTP core of the Klaviyo client: a pooled `requests` session, JSON:API errors, deadline-bounded
retries."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

from shared.deadline import Deadline
from shared.errors import DeadlineExceeded, KlaviyoError
from shared.http import (
    HttpFailure,
    InvalidRequest,
    new_session,
    parse_json,
    retry_after_seconds,
    send,
)
from shared.klaviyo.limiter import RateLimiter
from shared.log import get_logger
from shared.retry import call_with_retry

log = get_logger("klaviyo")

JSONAPI = "application/vnd.api+json"
USER_AGENT = "ct-klaviyo-connector/0.1 (+commercetools-klaviyo sync)"
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 30.0)
SUCCESS = (200, 201, 202, 204)

# Below this many seconds left there is no point opening a connection: the answer could not
# arrive in time, and failing now leaves the caller its remaining time to give up cleanly.
_MIN_USEFUL_SECONDS = 0.05

# Path segments that are names, not ids. Everything else in a path is replaced by `{id}` in log
# lines, so a log never carries a catalog id or profile id it does not mean to.
_NAMED_SEGMENTS = frozenset(
    {
        "api", "profiles", "profile-import", "events", "catalog-items", "catalog-variants",
        "catalog-categories", "variants", "items", "categories", "relationships",
        "profile-bulk-import-jobs", "import-errors", "event-bulk-create-jobs",
        "profile-subscription-bulk-create-jobs", "profile-subscription-bulk-delete-jobs",
        "data-privacy-deletion-jobs",
    }
    | {
        f"catalog-{kind}-bulk-{op}-jobs"
        for kind in ("item", "variant", "category")
        for op in ("create", "update", "delete")
    }
)


def path_template(path_or_url: str) -> str:
    """`/api/catalog-items/%24custom...` → `/api/catalog-items/{id}` (no query, no ids)."""
    path = urlsplit(path_or_url).path
    return "/".join(s if (not s or s in _NAMED_SEGMENTS) else "{id}" for s in path.split("/"))


class KlaviyoTransport:
    """Sends JSON:API requests to Klaviyo and turns every failure into a KlaviyoError."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        revision: str,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        max_attempts: int = 8,
        retry_base: float = 0.25,
        retry_cap: float = 8.0,
        limiter: RateLimiter | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a Klaviyo API key is required")
        self.base_url = base_url.rstrip("/")
        self.revision = revision
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.limiter = limiter  # shared.klaviyo.limiter: every attempt waits for its slot
        self._headers = {
            "Authorization": f"Klaviyo-API-Key {api_key}",
            "revision": revision,
            "accept": JSONAPI,
        }
        self._json_headers = {**self._headers, "content-type": JSONAPI}
        # One session (one connection pool) per client, shared by the instance's threads.
        self.session = session or new_session(user_agent=USER_AGENT, url=self.base_url)

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(base_url={self.base_url!r}, revision={self.revision!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> KlaviyoTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        deadline: Deadline = Deadline.never(),
        ok: Collection[int] = SUCCESS,
    ) -> dict[str, Any] | None:
        """Send one API call, retrying transient failures until `deadline`.

        `path` is `/api/...` or an absolute URL (a `links.next`). Returns the parsed body, or None
        for an empty one (202/204). Raises KlaviyoError (non-retryable 4xx at once; retryable ones
        after the attempts run out) or DeadlineExceeded.
        """
        template = path_template(path)

        def on_retry(attempt: int, exc: Exception, delay: float) -> None:
            fields = exc.log_fields() if isinstance(exc, KlaviyoError) else {}
            log.warning(
                "klaviyo request failed, retrying",
                method=method,
                path=template,
                attempt=attempt,
                delaySeconds=round(delay, 3),
                **fields,
            )

        return call_with_retry(
            lambda: self._send(method, path, template, json=json, params=params,
                               deadline=deadline, ok=ok),
            deadline=deadline,
            max_attempts=self.max_attempts,
            base=self.retry_base,
            cap=self.retry_cap,
            on_retry=on_retry,
        )

    def _send(
        self,
        method: str,
        path: str,
        template: str,
        *,
        json: dict[str, Any] | None,
        params: dict[str, str] | None,
        deadline: Deadline,
        ok: Collection[int],
    ) -> dict[str, Any] | None:
        remaining = deadline.remaining()
        if remaining < _MIN_USEFUL_SECONDS:
            raise DeadlineExceeded(f"no time left for {method} {template}")
        if self.limiter is not None:
            self.limiter.acquire(method, template, deadline=deadline)
            remaining = deadline.remaining()
        # A read that outlives the deadline would make the function overrun its own timeout.
        timeout = (min(self.timeout[0], remaining), min(self.timeout[1], remaining))
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        headers = self._headers if json is None else self._json_headers
        try:
            resp = send(self.session, method, url, params=params, headers=headers, json=json,
                        timeout=timeout)
        except InvalidRequest as exc:
            raise KlaviyoError(
                f"cannot call Klaviyo at {template}: {exc}",
                status=None, code="invalid_request", retryable=False,
            ) from exc
        except HttpFailure as exc:
            if exc.timed_out:
                raise KlaviyoError(
                    f"Klaviyo timed out on {method} {template}", status=None, code="timeout"
                ) from exc
            raise KlaviyoError(
                f"Klaviyo unreachable on {method} {template}: {exc}",
                status=None, code="transport_error",
            ) from exc
        if resp.status_code in ok:
            return self._parse_success(resp, method, template)
        error = self._error_from(resp, method, template)
        if resp.status_code == 429 and self.limiter is not None:
            self.limiter.throttled(method, template, error.retry_after)
        raise error

    @staticmethod
    def _parse_success(
        resp: requests.Response, method: str, template: str
    ) -> dict[str, Any] | None:
        if not resp.content:
            return None
        try:
            body = parse_json(resp.content)
        except ValueError as exc:
            # A garbled answer tells us nothing about whether the write happened; writes are
            # idempotent, so asking again is the safe reading.
            raise KlaviyoError(
                f"Klaviyo sent a non-JSON {resp.status_code} on {method} {template}",
                status=resp.status_code, code="invalid_response", retryable=True,
            ) from exc
        return body if isinstance(body, dict) else {"data": body}

    @staticmethod
    def _error_from(resp: requests.Response, method: str, template: str) -> KlaviyoError:
        errors: list[dict[str, Any]] = []
        try:
            body = parse_json(resp.content)
            if isinstance(body, dict) and isinstance(body.get("errors"), list):
                errors = [e for e in body["errors"] if isinstance(e, dict)]
        except ValueError:
            pass
        code = errors[0].get("code") if errors else None
        # Message carries status and code only: `detail` can echo an email or a phone number.
        return KlaviyoError(
            f"Klaviyo answered {resp.status_code}{f' {code}' if code else ''} "
            f"on {method} {template}",
            status=resp.status_code,
            code=code,
            errors=errors,
            retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
        )

    def paginate(
        self,
        path: str,
        *,
        params: dict[str, str] | None = None,
        deadline: Deadline = Deadline.never(),
    ) -> Iterator[dict[str, Any]]:
        """Yield every resource of a collection, following `links.next` (absolute URLs)."""
        body = self.request("GET", path, params=params, deadline=deadline)
        while body is not None:
            yield from body.get("data") or []
            next_url = (body.get("links") or {}).get("next")
            if not next_url:
                return
            body = self.request("GET", next_url, deadline=deadline)
