"""The commercetools SDK's OAuth2 session, used for raw JSON GETs.

Why not the SDK's request builders (`Client.with_project_key(..).customers().get(..)`)? Every one
of them deserializes the body into marshmallow models (`Customer.deserialize(response.json())`):
slow for pages of 500, and the project maps CT's own camelCase JSON with its own pydantic models.
They also answer 429 (and any status they do not list) with a warning and `None`.

What we do use from the SDK is `BaseClient`: it builds the `RefreshingOAuth2Session`
(client-credentials grant with HTTP Basic client auth, the scope list, the `/oauth/token` URL
fix-up, the Bearer header on every request, token storage through a token saver, User-Agent). We
give it
- an HTTPAdapter with retries switched off: the SDK's default `Retry(status=3, connect=3)` would
  multiply with `shared.retry.call_with_retry` (3 x 8 attempts) and ignore our deadline; and
- a token saver seeded with an already-expired placeholder, so `BaseClient.__init__` does no
  network I/O (it fetches a token eagerly only when the saver has none). Building the client at
  import time is then free, and the first token fetch happens inside a request, bounded by that
  request's timeout and retried like any other call.

Tokens are fetched/refreshed explicitly (`ensure_token`, `refresh`) rather than through
requests-oauthlib's auto-refresh, because that path forwards the GET's keyword arguments
(`params`, `allow_redirects`) into the token request body.
"""

from __future__ import annotations

import logging
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from commercetools.base_client import BaseClient
from commercetools.utils import BaseTokenSaver, fix_token_url
from requests.adapters import HTTPAdapter

from shared.errors import CommercetoolsError

# requests-oauthlib logs tokens, and token request headers (Basic client credentials), at DEBUG.
logging.getLogger("requests_oauthlib").setLevel(logging.INFO)

# Refresh a little before the token expires (at most this, at most a tenth of its lifetime), so a
# request never leaves with a token that dies in flight.
TOKEN_EXPIRY_MARGIN_SECONDS = 60.0

_EXPIRED_PLACEHOLDER = {"access_token": "", "token_type": "Bearer", "expires_at": 1.0}


class _DeferredTokenSaver(BaseTokenSaver):
    """Keeps this client's token in memory; starts with an expired placeholder (see module doc)."""

    def __init__(self) -> None:
        self._token: dict[str, Any] = dict(_EXPIRED_PLACEHOLDER)

    def get_token(self, client_id: str, scopes: list[str]) -> dict[str, Any]:
        return self._token

    def add_token(self, client_id: str, scopes: list[str], token: dict[str, Any]) -> None:
        self._token = token


class _NoRetryAdapter(HTTPAdapter):
    """No urllib3 retries, and a default timeout for any request sent without one.

    Token endpoint errors are raised here as CommercetoolsError, with their HTTP status: past
    this point oauthlib would only see an unparseable body and lose the status (a 503 would look
    like a definite `MissingTokenError`).
    """

    def __init__(self, *, token_url: str, timeout: tuple[float, float]) -> None:
        super().__init__(max_retries=0)
        self._token_url = token_url
        self._timeout = timeout

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        response = super().send(request, **kwargs)
        if (request.url or "").startswith(self._token_url) and response.status_code >= 400:
            raise token_error(response)
        return response


def token_error(response: requests.Response) -> CommercetoolsError:
    status = response.status_code
    code: str | None = None
    errors: list[dict[str, Any]] = []
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        code = body.get("error") or (errors[0].get("code") if errors else None)
    return CommercetoolsError(
        f"commercetools token request failed: HTTP {status}" + (f" {code}" if code else ""),
        status=status,
        code=code,
        errors=errors,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent/invalid."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class SdkSession(BaseClient):
    """`BaseClient` (auth + session) plus the two operations the connector needs from it."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        scopes: list[str],
        api_url: str,
        auth_url: str,
        timeout: tuple[float, float],
    ) -> None:
        token_url = fix_token_url(auth_url)
        super().__init__(
            client_id=client_id,
            client_secret=client_secret,
            scope=scopes,
            url=api_url,
            token_url=token_url,
            token_saver=_DeferredTokenSaver(),
            http_adapter=_NoRetryAdapter(token_url=token_url, timeout=timeout),
        )
        self._token_lock = threading.Lock()

    def _token_fresh(self) -> bool:
        token = self._http_client.token or {}
        if not token.get("access_token"):
            return False
        expires_at = token.get("expires_at")
        if expires_at is None:
            return True  # no expiry given: use it until the API answers 401
        lifetime = float(token.get("expires_in") or 0)
        margin = min(TOKEN_EXPIRY_MARGIN_SECONDS, lifetime / 10) if lifetime > 0 else 0.0
        return float(expires_at) - margin > time.time()

    def ensure_token(self, timeout: tuple[float, float]) -> None:
        if not self._token_fresh():
            with self._token_lock:
                if not self._token_fresh():
                    self._fetch(timeout)

    def refresh(self, timeout: tuple[float, float], *, stale: str | None) -> None:
        """Fetch a new token unless another thread already replaced the `stale` one."""
        with self._token_lock:
            if (self._http_client.token or {}).get("access_token") == stale:
                self._fetch(timeout)

    def _fetch(self, timeout: tuple[float, float]) -> None:
        # RefreshingOAuth2Session.refresh_token = fetch_token with client id/secret and scope.
        token = self._http_client.refresh_token(self._config["token_url"], timeout=timeout)
        self._save_token(token)

    @property
    def access_token(self) -> str | None:
        return (self._http_client.token or {}).get("access_token")

    def get(
        self, path: str, params: list[tuple[str, str]], timeout: tuple[float, float]
    ) -> requests.Response:
        return self._http_client.get(
            self._base_url + path,
            params=params,
            timeout=timeout,
            headers={"Accept": "application/json"},
        )
