"""The one HTTP layer both API clients use: urllib3 connection pools, nothing else.

Why not `requests` (which runs on this same urllib3): per call it merges session settings,
re-reads proxy variables from the environment, builds a PreparedRequest and a cookie jar, and
re-wraps the answer — about 0.9 ms of CPU per call on the benchmark machine against 0.3 ms for
the pool call itself, and a realtime delivery makes several calls (`python -m bench`). Nothing
here retries or follows redirects: retries belong to `shared.retry` (deadline-aware), and an API
that redirects is a misconfigured base URL, better reported than followed.
"""

from __future__ import annotations

import json as jsonlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import (
    HTTPError,
    LocationParseError,
    LocationValueError,
    NewConnectionError,
    ProxySchemeUnknown,
    TimeoutError,
)

Params = Mapping[str, str] | Sequence[tuple[str, str]]


class HttpFailure(Exception):
    """No answer: the connection failed, broke, or timed out (`timed_out`)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class InvalidRequest(ValueError):
    """The URL cannot be sent at all (no scheme, no host, unsupported scheme)."""


class Response:
    __slots__ = ("status", "headers", "content")

    def __init__(self, status: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status = status
        self.headers = headers  # case-insensitive (urllib3's HTTPHeaderDict)
        self.content = content

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        return jsonlib.loads(self.content)


def encode_json(value: Any) -> bytes:
    # Compact separators: Klaviyo bodies are up to 5 MB and every byte is sent and parsed.
    return jsonlib.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def with_params(url: str, params: Params | None) -> str:
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(params)


class HttpClient:
    """Pooled, thread-safe; one per API client, built once per function instance."""

    def __init__(self, *, user_agent: str, maxsize: int = 32) -> None:
        self._user_agent = user_agent
        self._maxsize = maxsize
        self._pools: urllib3.PoolManager | None = None
        self._lock = threading.Lock()

    def _manager(self) -> urllib3.PoolManager:
        # Built on first use: loading the CA bundle costs a few ms nobody should pay at import.
        if self._pools is None:
            with self._lock:
                if self._pools is None:
                    import certifi  # the bundle requests uses: same trust as before

                    self._pools = urllib3.PoolManager(
                        num_pools=4, maxsize=self._maxsize, retries=False,
                        ca_certs=certifi.where(),
                    )
        return self._pools

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        json: Any = None,
        timeout: tuple[float, float],
    ) -> Response:
        """Send one request and read the whole answer. Raises HttpFailure or InvalidRequest."""
        all_headers = {"User-Agent": self._user_agent}
        if headers:
            all_headers.update(headers)
        if json is not None:
            body = encode_json(json)
            if not any(k.lower() == "content-type" for k in all_headers):
                all_headers["Content-Type"] = "application/json"
        try:
            answer = self._manager().request(
                method,
                with_params(url, params),
                body=body,
                headers=all_headers,
                timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
                retries=False,
                redirect=False,
            )
        except (LocationParseError, LocationValueError, ProxySchemeUnknown) as exc:
            raise InvalidRequest(f"cannot send to this URL: {type(exc).__name__}") from exc
        except NewConnectionError as exc:  # a TimeoutError subclass, but refused is not slow
            raise HttpFailure(f"transport error: {type(exc).__name__}") from exc
        except TimeoutError as exc:
            raise HttpFailure(f"timed out: {type(exc).__name__}", timed_out=True) from exc
        except (HTTPError, OSError) as exc:
            raise HttpFailure(f"transport error: {type(exc).__name__}") from exc
        return Response(answer.status, answer.headers, answer.data)

    def close(self) -> None:
        if self._pools is not None:
            self._pools.clear()
