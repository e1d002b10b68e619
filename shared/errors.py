"""Error types shared by both functions, and the classification of API failures.

Every error that crosses a client boundary says whether retrying can help, because that decides
whether a Pub/Sub message is redelivered (retryable) or logged and acknowledged (terminal).

Terminal is a whitelist: only an answer that is a definite statement about the record sent
(`TERMINAL_STATUSES`) may be acknowledged. Everything else is an outage and is retried, then
redelivered, then dead-lettered: no answer, a timeout, 408/425/429, 5xx, a 2xx whose body is not
what the API documents, and 401/403 — a rotated key or a lost scope says nothing about the record
and is certain to repeat until someone fixes a setting (`auth_failure`, `fix_variables`).
"""

from __future__ import annotations

from typing import Any, ClassVar

# Definite statements about the record: malformed (400), not there (404), conflicting (409),
# too large (413), wrong media type (415), refused by validation (422).
TERMINAL_STATUSES = frozenset({400, 404, 409, 413, 415, 422})
# The credentials or their scopes are refused: a configuration outage, never a bad record.
AUTH_STATUSES = frozenset({401, 403})
# OAuth error codes of commercetools' token endpoint that mean the same, whatever the status
# (it answers `400 invalid_scope` for a scope the API client lacks; RFC 6749 §5.2 lists the rest).
AUTH_ERROR_CODES = frozenset({"invalid_client", "invalid_scope", "unauthorized_client",
                              "invalid_grant", "access_denied"})


def is_terminal(status: int | None, code: str | None = None) -> bool:
    """Whether an API answer with this status (and error code) is final for the record."""
    if status in AUTH_STATUSES or code in AUTH_ERROR_CODES:
        return False
    return status in TERMINAL_STATUSES


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""

    retryable: bool = False


class ConfigError(ConnectorError):
    """A setting is missing or invalid. The message is one line naming the variable."""


class MessageError(ConnectorError):
    """A Pub/Sub or commercetools message cannot be decoded or is not what we expect."""


class RetryableError(ConnectorError):
    """A transient failure: transport error, timeout, 429 or 5xx."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(RetryableError):
    """Retries ran out of time; the caller should fail so the work is redelivered."""


class ApiError(ConnectorError):
    """An HTTP API answered with an error status.

    `errors` holds the parsed JSON:API (Klaviyo) or commercetools error objects. It never holds
    request bodies, so it is safe to log `code`/`status`; `detail` may echo customer data and is
    not logged.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.errors = errors or []
        self.retry_after = retry_after
        self.retryable = retryable if retryable is not None else not is_terminal(status, code)

    # The settings an operator fixes when this API refuses the credentials (set per API).
    fix_variables: ClassVar[str] = ""

    @property
    def auth_failure(self) -> bool:
        """The API refused the credentials or their scope (retrying soon will not help)."""
        return self.status in AUTH_STATUSES or self.code in AUTH_ERROR_CODES

    def log_fields(self) -> dict[str, Any]:
        """Fields safe to put in a log line (no PII): status, code and error pointers."""
        pointers = [
            (e.get("source") or {}).get("pointer") or (e.get("source") or {}).get("parameter")
            for e in self.errors
        ]
        return {
            "status": self.status,
            "errorCode": self.code,
            "errorPointers": [p for p in pointers if p],
        }


class KlaviyoError(ApiError):
    """Klaviyo answered with an error (or could not be reached)."""

    fix_variables = "KLAVIYO_API_KEY"


class CommercetoolsError(ApiError):
    """commercetools answered with an error (or could not be reached)."""

    fix_variables = "CTP_CLIENT_ID/CTP_CLIENT_SECRET/CTP_SCOPES"


def auth_failure_of(exc: BaseException | None) -> ApiError | None:
    """The credential refusal behind `exc` (itself, or a cause: a retry that ran out of time on
    a 401 is still a 401), or None."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ApiError) and exc.auth_failure:
            return exc
        exc, seen = exc.__cause__, seen + 1
    return None
