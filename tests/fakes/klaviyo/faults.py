"""Fault injection, shared by every API family: 429 with Retry-After, 5xx, slow answers,
dropped connections, per path and method, plus seeded random faults (tests.fakes.chaos)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from tests.fakes.klaviyo.errors import ApiFailure, error_object
from tests.fakes.klaviyo.log import RecordedRequest


@dataclass
class Fault:
    status: int | None
    times: int
    path: str | None = None
    method: str | None = None
    retry_after: float | None = None
    delay: float | None = None
    disconnect: bool = False
    errors: list[dict[str, Any]] | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.times > 0 and (self.method is None or self.method.upper() == method)
                and (self.path is None or path.startswith(self.path)))



class FaultInjector:
    """Mixin of FakeKlaviyo: `faults` and `random_faults` are reset with the fake."""

    _lock: threading.RLock
    faults: list[Fault]
    random_faults: Any

    def inject(
        self, status: int | None = None, *, times: int = 1, path: str | None = None,
        method: str | None = None, retry_after: float | None = None,
        delay: float | None = None, errors: list[dict[str, Any]] | None = None,
    ) -> Fault:
        """The next `times` matching requests answer `status` (after sleeping `delay` seconds).

        With `status=None` the request is only delayed, then answered normally. `errors`
        replaces the JSON:API error list of the answer.
        """
        fault = Fault(status, times, path, method, retry_after, delay, False, errors)
        with self._lock:
            self.faults.append(fault)
        return fault

    def inject_disconnect(self, times: int = 1, path: str | None = None,
                          method: str | None = None) -> Fault:
        """The next `times` matching requests get their connection closed without an answer."""
        fault = Fault(None, times, path, method, disconnect=True)
        with self._lock:
            self.faults.append(fault)
        return fault

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def _random_fault(self, method: str, record: RecordedRequest, body: bytes) -> Fault | None:
        chaos = self.random_faults
        draw = chaos.draw(chaos.request_key(method, record.path, record.query, body))
        if draw is None:
            return None
        return Fault(draw.status, 1, retry_after=draw.retry_after, delay=draw.delay,
                     disconnect=draw.disconnect)

    @staticmethod
    def _fault_failure(fault: Fault) -> ApiFailure:
        status = fault.status or 500
        headers: dict[str, str] = {}
        if fault.errors is not None:
            errors = fault.errors
        elif status == 429:
            wait = fault.retry_after if fault.retry_after is not None else 1
            errors = [error_object(429, "throttled", "Request was throttled.",
                                   f"Request was throttled. Expected available in {wait:g} "
                                   "seconds.", pointer="/data/")]
        elif status >= 500:
            errors = [error_object(status, "error", "A server error occurred.",
                                   "A server error occurred.")]
        else:
            errors = [error_object(status, "error", "Error.", "Injected error.")]
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        return ApiFailure(status, errors, headers)
