"""CPU spent sending HTTP calls, and how many: a clock around the one method every call of the
connector goes through (`requests.Session.request`: Klaviyo, commercetools and its token).

Per call, `time.thread_time()` of the calling thread from building the request to the whole
answer read: preparing, encoding, the pool, the socket writes and reads — not the time spent
waiting for the server. A nested call (requests-oauthlib's session calling its base class) is
counted once.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# (module, class, method) of the HTTP entry point that is timed.
TARGET = ("requests.sessions", "Session", "request")


class HttpClock:
    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self.seconds = 0.0
        self.calls = 0

    def reading(self) -> tuple[float, int]:
        with self._lock:
            return self.seconds, self.calls

    @contextmanager
    def installed(self) -> Iterator[None]:
        module, cls_name, method = TARGET
        cls = getattr(importlib.import_module(module), cls_name)
        original = getattr(cls, method)
        clock = self

        def timed(session: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(clock._local, "inside", False):
                return original(session, *args, **kwargs)
            clock._local.inside = True
            start = time.thread_time()
            try:
                return original(session, *args, **kwargs)
            finally:
                spent = time.thread_time() - start
                clock._local.inside = False
                with clock._lock:
                    clock.seconds += spent
                    clock.calls += 1

        setattr(cls, method, timed)
        try:
            yield
        finally:
            setattr(cls, method, original)


def per_call_ms(seconds: float, calls: int) -> float | None:
    return round(seconds / calls * 1000, 4) if calls else None
