"""The commercetools Subscriptions API (GET/POST/DELETE /{projectKey}/subscriptions) on the
connector's commercetools session: its OAuth, its `requests` session, the shared retry policy.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any

import requests

from shared.commercetools.auth import CommercetoolsSession
from shared.commercetools.client import USER_AGENT
from shared.config import Settings
from shared.deadline import Deadline
from shared.errors import CommercetoolsError
from shared.http import HttpFailure, InvalidRequest, parse_json, retry_after_seconds
from shared.retry import call_with_retry

Json = dict[str, Any]


class SubscriptionApi:
    """GET/POST/DELETE /{projectKey}/subscriptions[/key=<key>] on the connector's CT session.

    The connector's CommercetoolsClient is read-only by design; this shares its auth and HTTP
    layer (no hidden retries) and the shared retry policy.
    """

    def __init__(self, session: CommercetoolsSession, api_url: str, project_key: str,
                 *, timeout: tuple[float, float] = (5.0, 30.0),
                 deadline_seconds: float = 60.0) -> None:
        self._session = session
        self._base_url = api_url.rstrip("/")
        self.project_key = project_key
        self._timeout = timeout
        self._deadline_seconds = deadline_seconds

    @classmethod
    def from_settings(
        cls, settings: Settings, *, scopes: Sequence[str] | None = None
    ) -> SubscriptionApi:
        session = CommercetoolsSession(
            api_url=settings.ctp_api_url,
            auth_url=settings.ctp_auth_url,
            client_id=settings.ctp_client_id,
            client_secret=settings.ctp_client_secret.get_secret_value(),
            scopes=list(scopes or settings.ct_scopes),
            user_agent=USER_AGENT,
        )
        return cls(session, settings.ctp_api_url, settings.ctp_project_key)

    def _path(self, key: str | None = None) -> str:
        base = f"/{self.project_key}/subscriptions"
        return base if key is None else f"{base}/key={urllib.parse.quote(key, safe='')}"

    def get(self, key: str) -> Json | None:
        return self._call("GET", self._path(key), none_on_404=True)

    def create(self, draft: Json) -> Json:
        return self._call("POST", self._path(), body=draft)

    def update(self, key: str, version: int, actions: list[Json]) -> Json:
        return self._call("POST", self._path(key), body={"version": version, "actions": actions})

    def delete(self, key: str, version: int) -> Json:
        return self._call("DELETE", self._path(key), params={"version": str(version)})

    def _call(self, method: str, path: str, *, body: Json | None = None,
              params: dict[str, str] | None = None, none_on_404: bool = False) -> Any:
        deadline = Deadline.after(self._deadline_seconds)
        # Only reads are retried: a POST that timed out may have been applied (a retried create
        # would then fail with DuplicateField, a retried update with ConcurrentModification).
        attempts = 4 if method == "GET" else 1
        return call_with_retry(lambda: self._once(method, path, body, params, none_on_404),
                               deadline=deadline, max_attempts=attempts, base=0.5, cap=4.0)

    def _once(self, method: str, path: str, body: Json | None, params: dict[str, str] | None,
              none_on_404: bool) -> Any:
        url = self._base_url + path
        try:
            response = self._session.request(method, url, params=params, json=body,
                                             headers={"Accept": "application/json"},
                                             timeout=self._timeout)
        except (HttpFailure, InvalidRequest) as exc:
            raise CommercetoolsError(f"commercetools subscriptions: {exc}", status=None,
                                     retryable=isinstance(exc, HttpFailure)) from exc
        if response.status_code == 404 and none_on_404:
            return None
        if response.status_code >= 400:
            raise _error(response)
        return parse_json(response.content)


def _error(response: requests.Response) -> CommercetoolsError:
    errors: list[Json] = []
    try:
        body = parse_json(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    code = errors[0].get("code") if errors else None
    # CT's messages here name fields and types (no customer data): worth showing the operator.
    detail = "; ".join(str(e.get("message")) for e in errors if e.get("message"))
    return CommercetoolsError(
        f"commercetools subscriptions: HTTP {response.status_code}"
        + (f" {code}" if code else "") + (f": {detail}" if detail else ""),
        status=response.status_code, code=code, errors=errors,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )
