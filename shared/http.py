"""What is ours to decide about HTTP; the sending itself is `requests`.

- `new_session`: one `requests.Session` per API client, its connection pool sized for the
  threads the function serves with, no retries in the adapter (ours are in `shared.retry`,
  deadline-aware), TLS verified, and proxies read from the environment once, here, not on every
  request (see `new_session`).
- `send`: one request with (connect, read) timeouts and no redirects followed (an API that
  redirects is a misconfigured base URL, better reported), a `json` body encoded compactly
  (`encode_json`); every `requests` failure becomes `HttpFailure` (no answer: retryable) or
  `InvalidRequest` (cannot be sent at all).
- `parse_json`, `retry_after_seconds`; `chunks_within`: lists of ids cut to a query-string budget.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter

from shared import jsontext

Params = Mapping[str, str] | Sequence[tuple[str, str]]

T = TypeVar("T")

# requests' own default pool size; an instance serving more threads gets one connection each.
_MIN_POOL = 10


class HttpFailure(Exception):
    """No answer: the connection failed, broke, or timed out (`timed_out`)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class InvalidRequest(ValueError):
    """The request cannot be sent at all (bad URL, a header value with a line break)."""


def pool_size() -> int:
    """Connections kept per host: one per thread that may call at once. functions-framework
    serves with THREADS threads (default 4 per CPU) and each may be in a call to the same API."""
    try:
        threads = int(os.environ.get("THREADS", "0"))
    except ValueError:
        threads = 0
    return max(_MIN_POOL, threads or 4 * (os.cpu_count() or 1))


def environment_proxies(url: str) -> dict[str, str]:
    """The proxies HTTPS_PROXY / HTTP_PROXY / ALL_PROXY give for `url`, none if NO_PROXY names
    its host."""
    return {scheme: proxy for scheme, proxy in requests.utils.get_environ_proxies(url).items()
            if scheme != "no"}


def new_session(*, user_agent: str, url: str) -> requests.Session:
    """A pooled session for the API at `url` (its base URL; one host per session).

    Proxies: HTTPS_PROXY / HTTP_PROXY / NO_PROXY (and REQUESTS_CA_BUNDLE for a proxy's own CA)
    are honoured, so the bulk CLI works from a laptop behind a corporate proxy; Cloud Functions
    sets none, and egress goes direct. They are resolved here, once per session, for the hosts
    this session talks to, and `trust_env` is off: with it on, requests re-reads the whole
    environment (and looks for ~/.netrc) on every request.
    """
    session = requests.Session()
    session.trust_env = False
    session.headers["User-Agent"] = user_agent
    size = pool_size()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.proxies.update(environment_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    session.verify = bundle or True
    return session


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: tuple[float, float],
    params: Params | None = None,
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    json: Any = None,
) -> requests.Response:
    """One request, its whole answer read. Raises HttpFailure or InvalidRequest.

    `json` is sent as the body (`encode_json`; `Content-Type: application/json` unless the
    headers name another)."""
    if json is not None:
        data = encode_json(json)
        if not headers or not any(k.lower() == "content-type" for k in headers):
            headers = {**(headers or {}), "Content-Type": "application/json"}
    try:
        return session.request(method, url, params=params, headers=headers, data=data,
                               timeout=timeout, allow_redirects=False)
    except requests.Timeout as exc:  # ConnectTimeout and ReadTimeout
        raise HttpFailure(f"timed out: {type(exc).__name__}", timed_out=True) from exc
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader,
            requests.exceptions.URLRequired, requests.exceptions.InvalidJSONError) as exc:
        raise InvalidRequest(f"cannot send this request: {type(exc).__name__}") from exc
    except ValueError as exc:  # what http.client itself refuses (e.g. a control character)
        raise InvalidRequest(f"cannot send this request: {type(exc).__name__}") from exc
    except requests.RequestException as exc:  # refused, reset, DNS, TLS verification
        raise HttpFailure(f"transport error: {type(exc).__name__}") from exc


def parse_json(content: bytes) -> Any:
    """A body parsed as JSON (UTF-8/16/32 detected); ValueError when it is not JSON."""
    return jsontext.loads(content)


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


def chunks_within(
    items: Iterable[T], cost: Callable[[T], int], *, max_items: int, max_chars: int,
    base_chars: int,
) -> Iterator[list[T]]:
    """`items` in order, in chunks of at most `max_items` whose `base_chars` (the filter's own
    text) plus each item's encoded `cost` stay within `max_chars`: a filter of ids travels in
    the query string, and a URL too long is refused by proxies before the API sees it. An item
    over the budget by itself is still sent, alone (the API then says what is wrong with it)."""
    chunk: list[T] = []
    size = base_chars
    for item in items:
        item_cost = cost(item)
        if chunk and (len(chunk) >= max_items or size + item_cost > max_chars):
            yield chunk
            chunk, size = [], base_chars
        chunk.append(item)
        size += item_cost
    if chunk:
        yield chunk


def encode_json(value: Any) -> bytes:
    # Compact separators: Klaviyo bodies are up to 5 MB and every byte is sent and parsed.
    # A lone surrogate cannot be UTF-8: jsontext replaces it rather than fail the request.
    return jsontext.dumps(value)
