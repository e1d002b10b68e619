"""Retry with exponential backoff and full jitter, honouring Retry-After, bounded by a Deadline."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from shared.deadline import Deadline
from shared.errors import ApiError, ConnectorError, DeadlineExceeded

T = TypeVar("T")

# A refused key or scope is certain to repeat until someone fixes a setting: a couple of quick
# tries ride out a token that was rotated a moment ago, and the rest of the deadline is left to
# fail the invocation so Pub/Sub redelivers (and finally dead-letters) the message.
MAX_AUTH_ATTEMPTS = 3


def backoff_delay(
    attempt: int, *, base: float, cap: float, retry_after: float | None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait before retry number `attempt` (1-based).

    Klaviyo answers immediate retries of a 429 with another 429, so Retry-After is a floor; jitter
    on top of it keeps many instances from retrying in lockstep.
    """
    jitter = uniform(0, min(cap, base * 2 ** (attempt - 1)))
    return (retry_after or 0.0) + jitter


def call_with_retry(
    fn: Callable[[], T],
    *,
    deadline: Deadline,
    max_attempts: int = 8,
    base: float = 0.25,
    cap: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, ConnectorError, float], None] | None = None,
    max_auth_attempts: int = MAX_AUTH_ATTEMPTS,
    uniform: Callable[[float, float], float] = random.uniform,
) -> T:
    """Call `fn` until it succeeds, raises a non-retryable error, or time/attempts run out.

    A retryable error whose next wait would cross the deadline is raised at once as
    DeadlineExceeded (chained to the cause), so the caller fails fast and Pub/Sub redelivers.
    A credential refusal (401/403) gets at most `max_auth_attempts` attempts, then is raised.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except ConnectorError as exc:
            if not exc.retryable:
                raise
            auth = isinstance(exc, ApiError) and exc.auth_failure
            if attempt >= (min(max_attempts, max_auth_attempts) if auth else max_attempts):
                raise
            delay = backoff_delay(attempt, base=base, cap=cap,
                                  retry_after=getattr(exc, "retry_after", None), uniform=uniform)
            if delay >= deadline.remaining():
                raise DeadlineExceeded(
                    f"deadline reached after {attempt} attempt(s): {exc}") from exc
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
