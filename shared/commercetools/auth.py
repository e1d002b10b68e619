"""The commercetools session: the SDK's OAuth session for the token, one pooled `requests`
session for the API calls.

The client-credentials grant (request body, HTTP Basic client auth, parsing and validating the
token answer, its expiry) is the commercetools SDK's: `commercetools.base_client`'s
`RefreshingOAuth2Session` (requests-oauthlib, with oauthlib's `BackendApplicationClient`), the
session the SDK's own client authenticates with. What we decide around it:

- when: the token is fetched on first use, not at start-up (the SDK's `BaseClient` fetches in its
  constructor, with no timeout, so it is not used; the OAuth session and its modules are built
  with that first token request, so a function's import does not pay for them), renewed a
  little before it expires (the session's own auto-refresh waits until after expiry), and once
  when the API answers 401.
  Fetching is serialised by a lock: a burst of threads at start-up asks for one token, and no
  request leaves while a token is half replaced (requests-oauthlib blanks `token` while it
  fetches, so API calls do not go through the OAuth session itself but carry the token in a
  Bearer header of their own, on a session that shares its connection pool);
- the timeout of every token request (the caller's deadline);
- errors: commercetools' error answers become CommercetoolsError with status and code (never
  the message, which can echo field values); refused credentials say which variables to fix.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import requests

from shared.errors import CommercetoolsError, ConfigError
from shared.http import (
    HttpFailure,
    InvalidRequest,
    environment_proxies,
    new_session,
    parse_json,
    retry_after_seconds,
    send,
)
from shared.log import get_logger

log = get_logger("commercetools")

Timeout = tuple[float, float]

# Renew this long before expiry (at most a tenth of the token's lifetime), so a request never
# leaves with a token that dies in flight.
TOKEN_EXPIRY_MARGIN_SECONDS = 60.0


class CredentialsRefused(CommercetoolsError, ConfigError):
    """The token endpoint refused the API client's id, secret or scopes.

    A CommercetoolsError (status and code as answered, retried or not by the usual rules) and a
    ConfigError: its message is one line naming the variables to fix.
    """


def token_url(auth_url: str) -> str:
    """`https://auth.<region>.commercetools.com` → `.../oauth/token` (a full URL is kept)."""
    from commercetools.utils import fix_token_url

    return fix_token_url(auth_url.rstrip("/"))


def is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error_from(response: requests.Response, what: str) -> CommercetoolsError:
    """A commercetools error body (`{"statusCode","message","errors":[{"code"}]}`, or OAuth's
    `{"error"}`) → CommercetoolsError naming `what`, the status and the code — not the message,
    which can echo field values."""
    status = response.status_code
    errors: list[dict[str, Any]] = []
    try:
        body = parse_json(response.content)
    except ValueError:
        body = None
    code: str | None = None
    if isinstance(body, dict):
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        code = errors[0].get("code") if errors else None
        if code is None and isinstance(body.get("error"), str):
            code = body["error"]
    return CommercetoolsError(
        f"commercetools {what} request failed: HTTP {status}" + (f" {code}" if code else ""),
        status=status,
        code=code,
        errors=errors,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )


def _token_error(response: requests.Response) -> CommercetoolsError:
    error = error_from(response, "token")
    if error.auth_failure:
        return CredentialsRefused(
            f"commercetools refused the API client (HTTP {error.status}"
            + (f" {error.code}" if error.code else "")
            + "): check CTP_CLIENT_ID, CTP_CLIENT_SECRET and CTP_SCOPES",
            status=error.status, code=error.code, errors=error.errors,
            retry_after=error.retry_after,
        )
    return error


class CommercetoolsSession:
    """Authenticated requests to one commercetools project's API; thread-safe, no I/O until the
    first request, one per client and function instance."""

    def __init__(
        self,
        *,
        api_url: str,
        auth_url: str,
        client_id: str,
        client_secret: str,
        scopes: Sequence[str],
        user_agent: str,
    ) -> None:
        self._token_url = token_url(auth_url)
        secure = self._token_url.startswith("https://")
        if not secure and not is_loopback(self._token_url):
            # The client secret travels in this request: plain http only to a local fake.
            raise ConfigError("invalid configuration: CTP_AUTH_URL (must be https; plain http "
                              "only for localhost)")
        if not secure:
            # oauthlib refuses plain http unless told; only ever for a loopback fake (above).
            os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
        self._client_id, self._client_secret = client_id, client_secret
        self._scopes = list(scopes)
        self._user_agent = user_agent
        self.http = new_session(user_agent=user_agent, url=api_url)
        self._oauth: Any = None  # the SDK's OAuth session, built with the first token request
        self._token: str | None = None
        self._answer_status: int | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the secret
        return f"{type(self).__name__}(token_url={self._token_url!r})"

    def close(self) -> None:
        self.http.close()
        if self._oauth is not None:
            self._oauth.close()

    def _oauth_session(self) -> Any:
        """The SDK's OAuth session, built (and its modules imported: requests-oauthlib, oauthlib,
        the SDK's base client) when the first token is needed, not at start-up."""
        if self._oauth is None:
            from commercetools.base_client import RefreshingOAuth2Session
            from oauthlib.oauth2 import BackendApplicationClient

            oauth = RefreshingOAuth2Session(
                client=BackendApplicationClient(client_id=self._client_id, scope=self._scopes),
                scope=self._scopes,
                auto_refresh_url=self._token_url,
                auto_refresh_kwargs={"client_id": self._client_id,
                                     "client_secret": self._client_secret},
            )
            # Same pool, TLS and User-Agent as the API calls; no redirects followed.
            oauth.trust_env = False
            oauth.max_redirects = 0
            oauth.headers["User-Agent"] = self._user_agent
            oauth.proxies = environment_proxies(self._token_url)
            oauth.verify = self.http.verify
            adapter = self.http.get_adapter("https://")
            oauth.mount("https://", adapter)
            oauth.mount("http://", adapter)
            oauth.register_compliance_hook("access_token_response", self._check_answer)
            self._oauth = oauth
        return self._oauth

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: Timeout | Callable[[], Timeout],
        params: Any = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """One authenticated request; a 401 renews the token and sends it once more.

        `timeout` may be a function giving the (connect, read) timeout for each exchange (token,
        request, renewal, resend), so a caller's deadline bounds all of them.
        Raises HttpFailure / InvalidRequest (no answer), CommercetoolsError (the token endpoint
        failed; CredentialsRefused when it refused the credentials)."""
        timeout_for = timeout if callable(timeout) else (lambda: timeout)
        token = self.token(timeout_for())
        response = self._send(method, url, token, timeout_for(), params, json, headers)
        if response.status_code == 401:
            # Expired or revoked server-side before its expires_in.
            log.info("commercetools token rejected, renewing")
            self.renew(timeout_for(), stale=token)
            response = self._send(method, url, self.token(timeout_for()), timeout_for(), params,
                                  json, headers)
        return response

    def _send(self, method: str, url: str, token: str, timeout: tuple[float, float],
              params: Any, json: Any, headers: Mapping[str, str] | None
              ) -> requests.Response:
        return send(self.http, method, url, params=params, json=json, timeout=timeout,
                    headers={**(headers or {}), "Authorization": f"Bearer {token}"})

    def token(self, timeout: tuple[float, float]) -> str:
        """A token that is not about to expire (fetched now if needed)."""
        token = self._token
        if token is not None and time.time() < self._renew_at:
            return token
        with self._lock:
            if self._token is None or time.time() >= self._renew_at:
                self._fetch(timeout)
            assert self._token is not None
            return self._token

    def renew(self, timeout: tuple[float, float], *, stale: str) -> None:
        """The API refused `stale`: fetch a new token unless another thread already has."""
        with self._lock:
            if self._token == stale:
                self._fetch(timeout)

    def _check_answer(self, response: requests.Response) -> requests.Response:
        # Runs before oauthlib parses the answer: an error status is ours to classify.
        self._answer_status = response.status_code
        if response.status_code >= 400:
            raise _token_error(response)
        return response

    def _fetch(self, timeout: tuple[float, float]) -> None:
        oauth = self._oauth_session()
        from oauthlib.oauth2 import OAuth2Error

        try:
            # The SDK's renewal: the client-credentials grant with the session's id, secret and
            # scopes, HTTP Basic client auth.
            answer = oauth.refresh_token(self._token_url, timeout=timeout)
        except requests.TooManyRedirects as exc:  # a token URL that redirects: misconfigured
            # requests attaches the last redirect response to TooManyRedirects
            raise error_from(cast(requests.Response, exc.response), "token") from exc
        except requests.Timeout as exc:
            raise CommercetoolsError("commercetools token request timed out", status=None,
                                     code="timeout") from exc
        except requests.RequestException as exc:
            raise CommercetoolsError(
                f"commercetools token request failed: transport error: {type(exc).__name__}",
                status=None, code="transport_error") from exc
        except Warning as exc:  # oauthlib: "Scope has changed" — the token is usable as granted
            answer = dict(getattr(exc, "token", None) or {})
        except (OAuth2Error, ValueError) as exc:  # a 2xx without a usable token
            raise CommercetoolsError("commercetools token response has no access_token",
                                     status=self._answer_status,
                                     code="invalid_token_response") from exc
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise CommercetoolsError("commercetools token response has no access_token",
                                     status=self._answer_status, code="invalid_token_response")
        lifetime = answer.get("expires_in")
        if isinstance(lifetime, (int, float)) and not isinstance(lifetime, bool) and lifetime > 0:
            margin = min(TOKEN_EXPIRY_MARGIN_SECONDS, lifetime / 10)
            self._renew_at = time.time() + lifetime - margin
        else:
            self._renew_at = float("inf")  # no expiry given: use it until the API answers 401
        self._token = token


__all__ = ["CommercetoolsSession", "CredentialsRefused", "HttpFailure", "InvalidRequest",
           "error_from", "is_loopback", "token_url"]
