"""CPU spent sending HTTP calls, and how many: a clock around the one function every Klaviyo and
commercetools API call goes through (`shared.http.send`: encoding the JSON body, `requests`
preparing the request, the pool, the socket writes and reads, the whole answer read).

Per call, `time.thread_time()` of the calling thread — not the time spent waiting for the
server. The commercetools token request (once per instance, by the SDK's OAuth session) is not
counted. A nested call is counted once.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# (module, class or None, function) of the HTTP entry point that is timed. A module-level
# function is replaced in its module and wherever it was imported by name.
TARGET: tuple[str, str | None, str] = ("shared.http", None, "send")


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
        module_name, cls_name, name = TARGET
        module = importlib.import_module(module_name)
        owner = getattr(module, cls_name) if cls_name else module
        original = getattr(owner, name)
        clock = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if getattr(clock._local, "inside", False):
                return original(*args, **kwargs)
            clock._local.inside = True
            start = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.thread_time() - start
                clock._local.inside = False
                with clock._lock:
                    clock.seconds += spent
                    clock.calls += 1

        setattr(owner, name, timed)
        # Modules that did `from shared.http import send` before the clock was installed.
        bound = [m for m in list(sys.modules.values())
                 if cls_name is None and m is not module and getattr(m, name, None) is original]
        for m in bound:
            setattr(m, name, timed)
        try:
            yield
        finally:
            setattr(owner, name, original)
            for m in bound:
                setattr(m, name, original)
            for m in list(sys.modules.values()):  # imported while installed
                if cls_name is None and getattr(m, name, None) is timed:
                    setattr(m, name, original)


def per_call_ms(seconds: float, calls: int) -> float | None:
    return round(seconds / calls * 1000, 4) if calls else None
