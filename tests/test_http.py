"""shared.http (sessions on `requests`) against real sockets: keep-alive reuse, stale connections,
timeouts, bad URLs, header injection, proxies from the environment."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from shared.http import HttpFailure, InvalidRequest, new_session, send

Behaviour = Callable[[socket.socket, int], bool]  # (connection, request number) -> keep open?


class RawServer:
    """An HTTP/1.1 server on a raw socket, so tests decide exactly when connections close."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.connections = 0
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buffer[:length])
                buffer = buffer[length:]
                if not self.behaviour(conn, len(self.requests)):
                    return

    def close(self) -> None:
        self._listener.close()


def answer(conn: socket.socket, body: bytes = b'{"ok":true}', extra: str = "") -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n" + extra.encode() + b"\r\n" + body)


@pytest.fixture
def serve() -> Iterator[Callable[[Behaviour], RawServer]]:
    servers: list[RawServer] = []

    def start(behaviour: Behaviour) -> RawServer:
        servers.append(RawServer(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def keep_alive(conn: socket.socket, n: int) -> bool:
    answer(conn)
    return True


def session_for(server: RawServer, user_agent: str = "test/1") -> requests.Session:
    return new_session(user_agent=user_agent, url=server.url)


def test_connections_are_kept_alive_and_reused(serve: Callable[[Behaviour], RawServer]) -> None:
    server = serve(keep_alive)
    session = session_for(server)
    for _ in range(5):
        assert send(session, "GET", server.url + "/a", timeout=(2, 2)).json() == {"ok": True}
    assert server.connections == 1 and len(server.requests) == 5


def test_request_line_headers_params_and_body(serve: Callable[[Behaviour], RawServer]) -> None:
    server = serve(keep_alive)
    session = session_for(server)
    send(session, "POST", server.url + "/api/x", params=[("where", 'id in ("a b")')],
         json={"k": "é"}, headers={"revision": "r1"}, timeout=(2, 2))
    raw = server.requests[0]
    assert raw.startswith(b"POST /api/x?where=id+in+%28%22a+b%22%29 HTTP/1.1\r\n")
    assert b"User-Agent: test/1\r\n" in raw and b"revision: r1\r\n" in raw
    assert b"Content-Type: application/json\r\n" in raw
    assert raw.endswith('{"k":"é"}'.encode())


def test_idle_connection_closed_by_the_server_is_replaced_silently(
        serve: Callable[[Behaviour], RawServer]) -> None:
    # Servers close idle keep-alive connections without notice; the next request must not fail
    # (urllib3 checks a pooled connection before reusing it, with no retry of a sent request).
    def one_per_connection(conn: socket.socket, n: int) -> bool:
        answer(conn)  # no "Connection: close": the client believes it may reuse it
        return False

    server = serve(one_per_connection)
    session = session_for(server)
    for _ in range(3):
        assert send(session, "GET", server.url + "/a", timeout=(2, 2)).status_code == 200
        time.sleep(0.05)  # let the close arrive
    assert server.connections == 3 and len(server.requests) == 3


def test_connection_close_answer_is_not_reused(serve: Callable[[Behaviour], RawServer]) -> None:
    def close_after(conn: socket.socket, n: int) -> bool:
        answer(conn, extra="Connection: close\r\n")
        return False

    server = serve(close_after)
    session = session_for(server)
    for _ in range(2):
        send(session, "GET", server.url + "/a", timeout=(2, 2))
    assert server.connections == 2


def test_fresh_connection_dropped_is_a_transport_failure(
        serve: Callable[[Behaviour], RawServer]) -> None:
    server = serve(lambda conn, n: False)  # reads the request, closes without answering
    with pytest.raises(HttpFailure) as info:
        send(session_for(server), "POST", server.url + "/a", data=b"{}", timeout=(2, 2))
    assert not info.value.timed_out
    # No retry inside the adapter: a request that may have been processed is not re-sent.
    assert len(server.requests) == 1


def test_server_errors_are_answers_not_retried(serve: Callable[[Behaviour], RawServer]) -> None:
    def unavailable(conn: socket.socket, n: int) -> bool:
        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                     b"Content-Length: 0\r\n\r\n")
        return True

    server = serve(unavailable)
    response = send(session_for(server), "GET", server.url + "/a", timeout=(2, 2))
    assert response.status_code == 503 and len(server.requests) == 1  # shared.retry decides


def test_redirects_are_not_followed(serve: Callable[[Behaviour], RawServer]) -> None:
    def redirect(conn: socket.socket, n: int) -> bool:
        conn.sendall(b"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:9/elsewhere\r\n"
                     b"Content-Length: 0\r\n\r\n")
        return True

    server = serve(redirect)
    response = send(session_for(server), "GET", server.url + "/a", timeout=(2, 2))
    assert response.status_code == 301 and len(server.requests) == 1


def test_slow_answer_is_a_read_timeout(serve: Callable[[Behaviour], RawServer]) -> None:
    def slow(conn: socket.socket, n: int) -> bool:
        time.sleep(1.0)
        return False

    server = serve(slow)
    started = time.monotonic()
    with pytest.raises(HttpFailure) as info:
        send(session_for(server), "GET", server.url + "/a", timeout=(2, 0.2))
    assert info.value.timed_out and time.monotonic() - started < 0.9


def test_connect_timeout_is_a_timeout() -> None:
    # A listener whose backlog is full never completes the handshake of the next connection.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.05)
        try:
            url = f"http://127.0.0.1:{port}/"
            started = time.monotonic()
            with pytest.raises(HttpFailure) as info:
                send(new_session(user_agent="t", url=url), "GET", url, timeout=(0.3, 5))
            elapsed = time.monotonic() - started
        finally:
            for s in fillers:
                s.close()
    if not info.value.timed_out:
        pytest.skip("this kernel refuses rather than drops connections beyond the backlog")
    assert elapsed < 2


def test_refused_connection_is_a_transport_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(HttpFailure) as info:
        send(new_session(user_agent="t", url=url), "GET", url, timeout=(1, 1))
    assert not info.value.timed_out


@pytest.mark.parametrize("url", ["localhost:80/x", "ftp://host/x", "http:///x",
                                 "http://host:notaport/x", "/relative"])
def test_unsendable_urls_are_invalid_requests(url: str) -> None:
    with pytest.raises(InvalidRequest):
        send(new_session(user_agent="t", url="http://host"), "GET", url, timeout=(1, 1))


def test_line_breaks_in_a_url_cannot_inject_headers(
        serve: Callable[[Behaviour], RawServer]) -> None:
    server = serve(keep_alive)
    send(session_for(server), "GET", server.url + "/a\r\nX-Injected: 1", timeout=(2, 2))
    (raw,) = server.requests
    assert b"X-Injected" not in raw.split(b"\r\n\r\n")[0].split(b"\r\n", 1)[1]
    assert raw.startswith(b"GET /a%0D%0AX-Injected:%201 HTTP/1.1\r\n")


@pytest.mark.parametrize("value", ["a\r\nY: b", "a\nY: b", "a\rY: b"])
def test_header_injection_is_refused(serve: Callable[[Behaviour], RawServer], value: str) -> None:
    server = serve(keep_alive)
    with pytest.raises(InvalidRequest):
        send(session_for(server), "GET", server.url, headers={"X": value}, timeout=(1, 1))
    assert server.requests == []


def test_concurrent_requests_share_the_pool(serve: Callable[[Behaviour], RawServer]) -> None:
    server = serve(keep_alive)
    session = session_for(server)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                assert send(session, "GET", server.url + "/a", timeout=(2, 2)).status_code == 200
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(server.requests) == 160 and server.connections <= 8


def test_pool_holds_a_connection_per_serving_thread(serve: Callable[[Behaviour], RawServer],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # functions-framework serves THREADS threads; each keeps its connection between deliveries.
    monkeypatch.setenv("THREADS", "16")
    server = serve(keep_alive)
    session = session_for(server)
    barrier = threading.Barrier(16)

    def worker() -> None:
        for _ in range(3):
            barrier.wait()
            send(session, "GET", server.url + "/a", timeout=(2, 2))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Not more than 16 ever opened: none was discarded for want of room in the pool.
    assert len(server.requests) == 48 and server.connections <= 16


def test_proxies_come_from_the_environment_once(serve: Callable[[Behaviour], RawServer],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The proxy is a plain HTTP server here: a proxied plain-http request is sent to it with the
    # absolute URL in the request line.
    proxy = serve(keep_alive)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "bypassed.example")
    proxied = new_session(user_agent="t", url="http://api.example/")
    bypassed = new_session(user_agent="t", url="http://bypassed.example/")
    monkeypatch.delenv("HTTP_PROXY")  # resolved at construction, not per request

    assert send(proxied, "GET", "http://api.example/x", timeout=(2, 2)).status_code == 200
    assert proxy.requests[0].startswith(b"GET http://api.example/x HTTP/1.1\r\n")
    assert bypassed.proxies == {}


def test_no_proxy_variables_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    session = new_session(user_agent="t", url="https://a.klaviyo.com")
    assert session.proxies == {} and session.trust_env is False and session.verify is True


def test_a_proxy_ca_bundle_from_the_environment_is_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corporate-proxy-ca.pem")
    assert new_session(user_agent="t", url="https://a.klaviyo.com").verify == (
        "/etc/corporate-proxy-ca.pem")


def test_retry_after_seconds_and_http_date() -> None:
    from email.utils import formatdate

    from shared.http import retry_after_seconds

    assert retry_after_seconds("7") == 7.0 and retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("-3") == 0.0
    in_a_minute = retry_after_seconds(formatdate(time.time() + 60, usegmt=True))
    assert in_a_minute is not None and 55 <= in_a_minute <= 61
