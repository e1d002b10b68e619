"""Latency on both fakes, for the realtime soak: every answer takes a seeded random time.

commercetools answers *after* the document was read (so a delivery can hold an older version
while an edit lands and another delivery reads and writes the newer one); Klaviyo sleeps
*before* the write takes effect (so the older write can land last). Those are the interleavings
that make a write without the confirm-version-after-write step leave stale data.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any


class Latency:
    """`seconds`: the usual answer time (uniform); `spike`: (probability, low, high), the odd
    answer that takes far longer (what lets an older read's write land after a newer one's)."""

    def __init__(self, seed: int, seconds: tuple[float, float],
                 spike: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        self.seconds, self.spike = seconds, spike
        self._rnd = random.Random(seed)
        self._lock = threading.Lock()

    def pause(self) -> None:
        if self.seconds[1] <= 0 and self.spike[0] <= 0:
            return
        with self._lock:
            if self._rnd.random() < self.spike[0]:
                delay = self._rnd.uniform(self.spike[1], self.spike[2])
            else:
                delay = self._rnd.uniform(*self.seconds)
        time.sleep(delay)


def slow_fakes(seed: int) -> tuple[Any, Any]:
    """(FakeKlaviyo, FakeCommercetools) instances, not started, each with a `latency` whose
    `seconds` (uniform range; (0, 0) at first: none) every answer then takes."""
    from tests.fakes.commercetools import FakeCommercetools
    from tests.fakes.klaviyo import FakeKlaviyo

    ct_latency, klaviyo_latency = Latency(seed, (0.0, 0.0)), Latency(seed + 1, (0.0, 0.0))

    class SlowCommercetools(FakeCommercetools):
        latency = ct_latency

        def _dispatch(self, req: Any) -> Any:
            response = super()._dispatch(req)
            if not req.path.endswith("/oauth/token"):
                ct_latency.pause()  # the document is read: the answer is late, not the read
            return response

    class SlowKlaviyo(FakeKlaviyo):
        latency = klaviyo_latency
        # soak.limits.AccountLimits: the account's rate limits across every caller (None: none)
        account_limits: Any = None

        def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
            klaviyo_latency.pause()  # before the write takes effect
            limits = self.account_limits
            if limits is not None:
                retry_after = limits.admit(environ.get("REQUEST_METHOD", "GET"),
                                           environ.get("PATH_INFO", "/"))
                if retry_after is not None:
                    from soak.limits import throttled_answer

                    status, headers, body = throttled_answer(retry_after)
                    start_response(status, headers)
                    return [body]
            return super().__call__(environ, start_response)

    return SlowKlaviyo(), SlowCommercetools()
