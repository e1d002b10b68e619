"""commercetools API client credentials → Bearer token (OAuth 2 client-credentials grant).

`POST {auth_url}/oauth/token` with HTTP Basic client auth and `grant_type=client_credentials`
plus the scopes, as commercetools documents it; the answer's `access_token` and `expires_in`.
This is all the connector ever used the commercetools SDK for, and doing it here keeps the SDK
(its client package, marshmallow, requests-oauthlib: about 250 ms of the realtime cold start)
out of both functions.

The token is fetched on first use, not at start-up (building a client does no I/O), refreshed a
little before it expires, and once when the API answers 401. Fetching is serialised by a lock so
a burst of threads at start-up asks for one token, not one each.
"""

from __future__ import annotations

import base64
import ipaddress
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from shared.errors import CommercetoolsError, ConfigError
from shared.http import HttpClient, Response, retry_after_seconds

# Refresh this long before expiry (at most a tenth of the token's lifetime), so a request never
# leaves with a token that dies in flight.
TOKEN_EXPIRY_MARGIN_SECONDS = 60.0


def token_url(auth_url: str) -> str:
    """`https://auth.<region>.commercetools.com` → `.../oauth/token` (a full URL is kept)."""
    parts = urllib.parse.urlsplit(auth_url.rstrip("/"))
    if parts.path in ("", "/"):
        parts = parts._replace(path="/oauth/token")
    return urllib.parse.urlunsplit(parts)


def is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error_from(response: Response, what: str) -> CommercetoolsError:
    """A commercetools error body (`{"statusCode","message","errors":[{"code"}]}`, or OAuth's
    `{"error"}`) → CommercetoolsError naming `what`, the status and the code — not the message,
    which can echo field values."""
    status = response.status
    errors: list[dict[str, Any]] = []
    try:
        body = response.json()
    except ValueError:
        body = None
    code: str | None = None
    if isinstance(body, dict):
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        code = errors[0].get("code") if errors else None
        if code is None:
            code = body.get("error")
    return CommercetoolsError(
        f"commercetools {what} request failed: HTTP {status}" + (f" {code}" if code else ""),
        status=status,
        code=code,
        errors=errors,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )


class ClientCredentials:
    def __init__(
        self,
        http: HttpClient,
        *,
        auth_url: str,
        client_id: str,
        client_secret: str,
        scopes: Sequence[str],
    ) -> None:
        self._http = http
        self._url = token_url(auth_url)
        if not self._url.startswith("https://") and not is_loopback(self._url):
            # The client secret travels in this request: plain http only to a local fake.
            raise ConfigError("invalid configuration: CTP_AUTH_URL (must be https; plain http "
                              "only for localhost)")
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self._headers = {"Authorization": f"Basic {basic}", "Accept": "application/json"}
        self._form = urllib.parse.urlencode(
            {"grant_type": "client_credentials", "scope": " ".join(scopes)}
        ).encode()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the secret
        return f"{type(self).__name__}(url={self._url!r})"

    def token(self, timeout: tuple[float, float]) -> str:
        """A token that is not about to expire (fetched now if needed)."""
        token = self._token
        if token is not None and time.time() < self._refresh_at:
            return token
        with self._lock:
            if self._token is None or time.time() >= self._refresh_at:
                self._fetch(timeout)
            assert self._token is not None
            return self._token

    def refresh(self, timeout: tuple[float, float], *, stale: str) -> None:
        """The API refused `stale`: fetch a new token unless another thread already has."""
        with self._lock:
            if self._token == stale:
                self._fetch(timeout)

    def _fetch(self, timeout: tuple[float, float]) -> None:
        response = self._http.request(
            "POST", self._url, body=self._form, timeout=timeout,
            headers={**self._headers, "Content-Type": "application/x-www-form-urlencoded"},
        )
        if response.status >= 400:
            raise error_from(response, "token")
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise CommercetoolsError("commercetools token response has no access_token",
                                     status=response.status, code="invalid_token_response")
        lifetime = body.get("expires_in")
        if isinstance(lifetime, (int, float)) and not isinstance(lifetime, bool) and lifetime > 0:
            margin = min(TOKEN_EXPIRY_MARGIN_SECONDS, lifetime / 10)
            self._refresh_at = time.time() + lifetime - margin
        else:
            self._refresh_at = float("inf")  # no expiry given: use it until the API answers 401
        self._token = token
