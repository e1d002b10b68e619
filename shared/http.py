"""The one HTTP layer both API clients use: keep-alive connections from the standard library.

Why not `requests`, or urllib3 under it: per call, requests merges session settings, re-reads
proxy variables from the environment and builds a PreparedRequest and a cookie jar; urllib3
re-parses and re-percent-encodes the URL byte by byte (twice: pool manager, then pool). On the
benchmark machine that was 1.5 ms (requests) and 0.65 ms (urllib3) of CPU per call against
0.4 ms for `http.client` itself, and a realtime delivery makes several calls (`python -m bench`).
What they add that we need is small and is here: a thread-safe pool of kept-alive connections
per host, separate connect and read timeouts, TLS verified against certifi's bundle, and one
silent retry when a kept-alive connection turns out to have been closed by the server while
idle. Nothing else retries, and redirects are not followed: retries belong to `shared.retry`
(deadline-aware), and an API that redirects is a misconfigured base URL, better reported.
Proxies from the environment are not used (Cloud Functions egress needs none).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from shared import jsontext

Params = Mapping[str, str] | Sequence[tuple[str, str]]

# Idle connections kept per host; more may be open at once, the surplus is closed when returned.
MAX_IDLE_PER_HOST = 32


class HttpFailure(Exception):
    """No answer: the connection failed, broke, or timed out (`timed_out`)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class InvalidRequest(ValueError):
    """The URL cannot be sent at all (no scheme, no host, unsupported scheme)."""


class Response:
    __slots__ = ("status", "headers", "content")

    def __init__(self, status: int, headers: Any, content: bytes) -> None:
        self.status = status
        self.headers = headers  # http.client's message: `.get(name)` ignores case
        self.content = content

    def json(self) -> Any:
        """The body parsed as JSON (lone surrogates replaced); ValueError when it is not JSON."""
        return jsontext.loads(self.content)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent/invalid."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def encode_json(value: Any) -> bytes:
    # Compact separators: Klaviyo bodies are up to 5 MB and every byte is sent and parsed.
    # A lone surrogate cannot be UTF-8: jsontext replaces it rather than fail the request.
    return jsontext.dumps(value)


def with_params(url: str, params: Params | None) -> str:
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(params)


_tls_context: ssl.SSLContext | None = None
_tls_lock = threading.Lock()


def _tls() -> ssl.SSLContext:
    # Built on first use: loading the CA bundle costs milliseconds nobody should pay at import.
    global _tls_context
    if _tls_context is None:
        with _tls_lock:
            if _tls_context is None:
                import certifi  # the bundle requests used: the same trust as before

                _tls_context = ssl.create_default_context(cafile=certifi.where())
    return _tls_context


_Origin = tuple[str, str, int]


class HttpClient:
    """Pooled and thread-safe; one per API client, built once per function instance."""

    def __init__(self, *, user_agent: str) -> None:
        self._user_agent = user_agent
        self._idle: dict[_Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

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
        origin, target = _split(with_params(url, params))
        all_headers = {"User-Agent": self._user_agent}
        if headers:
            all_headers.update(headers)
        if json is not None:
            body = encode_json(json)
            if not any(k.lower() == "content-type" for k in all_headers):
                all_headers["Content-Type"] = "application/json"
        connection, reused = self._checkout(origin, timeout[0])
        try:
            try:
                answer = _exchange(connection, method, target, body, all_headers, timeout)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # The server closed this idle kept-alive connection before our request reached
                # it (the request was not processed): the same request on a new connection.
                connection.close()
                connection, reused = self._connect(origin, timeout[0]), False
                answer = _exchange(connection, method, target, body, all_headers, timeout)
        except http.client.InvalidURL as exc:
            connection.close()
            raise InvalidRequest(f"cannot send to this URL: {type(exc).__name__}") from exc
        except ValueError as exc:  # a header value http.client refuses (e.g. a line break)
            connection.close()
            raise InvalidRequest(f"cannot send this request: {type(exc).__name__}") from exc
        except TimeoutError as exc:  # socket.timeout
            connection.close()
            raise HttpFailure(f"timed out: {type(exc).__name__}", timed_out=True) from exc
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise HttpFailure(f"transport error: {type(exc).__name__}") from exc
        status, answer_headers, content, keep = answer
        if keep:
            self._checkin(origin, connection)
        else:
            connection.close()
        return Response(status, answer_headers, content)

    def _checkout(self, origin: _Origin, connect_timeout: float
                  ) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(origin)
            if idle:
                return idle.pop(), True
        return self._connect(origin, connect_timeout), False

    def _connect(self, origin: _Origin, connect_timeout: float) -> http.client.HTTPConnection:
        scheme, host, port = origin
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=connect_timeout,
                                                     context=_tls())
        else:
            connection = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        try:
            connection.connect()
            # Small requests answered at once: no Nagle delay between headers and body.
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError as exc:
            connection.close()
            raise HttpFailure(f"connect timed out: {type(exc).__name__}",
                              timed_out=True) from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS verification
            connection.close()
            raise HttpFailure(f"transport error: {type(exc).__name__}") from exc
        return connection

    def _checkin(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < MAX_IDLE_PER_HOST:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            pools, self._idle = self._idle, {}
        for idle in pools.values():
            for connection in idle:
                connection.close()


def _split(url: str) -> tuple[_Origin, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"cannot send to this URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("cannot send to this URL: needs http(s)://host")
    if any(c in url for c in "\r\n "):
        raise InvalidRequest("cannot send to this URL: whitespace in it")
    origin = (parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return origin, target


def _exchange(
    connection: http.client.HTTPConnection, method: str, target: str, body: bytes | None,
    headers: dict[str, str], timeout: tuple[float, float],
) -> tuple[int, Any, bytes, bool]:
    connection.timeout = timeout[1]
    if connection.sock is not None:
        connection.sock.settimeout(timeout[1])
    connection.request(method, target, body=body, headers=headers)
    answer = connection.getresponse()
    content = answer.read()
    return answer.status, answer.headers, content, not answer.will_close
