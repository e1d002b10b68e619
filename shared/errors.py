"""Error types shared by both functions.

Every error that crosses a client boundary says whether retrying can help, because that decides
whether a Pub/Sub message is redelivered (retryable) or logged and acknowledged (terminal).
"""

from __future__ import annotations

from typing import Any


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
        self.retryable = (
            retryable if retryable is not None else status is None or status == 429 or status >= 500
        )

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


class CommercetoolsError(ApiError):
    """commercetools answered with an error (or could not be reached)."""
