"""shared.http against real sockets: keep-alive reuse, stale connections, timeouts, bad URLs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from shared.http import HttpClient, HttpFailure, InvalidRequest

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


def test_connections_are_kept_alive_and_reused(serve: Callable[[Behaviour], RawServer]) -> None:
    server = serve(keep_alive)
    client = HttpClient(user_agent="test/1")
    for _ in range(5):
        assert client.request("GET", server.url + "/a", timeout=(2, 2)).json() == {"ok": True}
    assert server.connections == 1 and len(server.requests) == 5


def test_request_line_headers_params_and_json_body(serve: Callable[[Behaviour], RawServer]) -> None:
    server = serve(keep_alive)
    client = HttpClient(user_agent="test/1")
    client.request("POST", server.url + "/api/x", params=[("where", 'id in ("a b")')],
                   json={"k": "é"}, headers={"revision": "r1"}, timeout=(2, 2))
    raw = server.requests[0]
    assert raw.startswith(b"POST /api/x?where=id+in+%28%22a+b%22%29 HTTP/1.1\r\n")
    assert b"User-Agent: test/1\r\n" in raw and b"revision: r1\r\n" in raw
    assert b"Content-Type: application/json\r\n" in raw
    assert raw.endswith('{"k":"é"}'.encode())


def test_idle_connection_closed_by_the_server_is_replaced_silently(
        serve: Callable[[Behaviour], RawServer]) -> None:
    # Servers close idle keep-alive connections without notice; the next request must not fail.
    def one_per_connection(conn: socket.socket, n: int) -> bool:
        answer(conn)  # no "Connection: close": the client believes it may reuse it
        return False

    server = serve(one_per_connection)
    client = HttpClient(user_agent="test/1")
    for _ in range(3):
        assert client.request("GET", server.url + "/a", timeout=(2, 2)).status == 200
        time.sleep(0.05)  # let the close arrive
    assert server.connections == 3 and len(server.requests) == 3


def test_connection_close_answer_is_not_reused(serve: Callable[[Behaviour], RawServer]) -> None:
    def close_after(conn: socket.socket, n: int) -> bool:
        answer(conn, extra="Connection: close\r\n")
        return False

    server = serve(close_after)
    client = HttpClient(user_agent="test/1")
    for _ in range(2):
        client.request("GET", server.url + "/a", timeout=(2, 2))
    assert server.connections == 2


def test_fresh_connection_dropped_is_a_transport_failure(
        serve: Callable[[Behaviour], RawServer]) -> None:
    server = serve(lambda conn, n: False)  # reads the request, closes without answering
    client = HttpClient(user_agent="test/1")
    with pytest.raises(HttpFailure) as info:
        client.request("POST", server.url + "/a", json={}, timeout=(2, 2))
    assert not info.value.timed_out
    assert len(server.requests) == 1  # a request that may have been processed is not re-sent


def test_slow_answer_is_a_read_timeout(serve: Callable[[Behaviour], RawServer]) -> None:
    def slow(conn: socket.socket, n: int) -> bool:
        time.sleep(1.0)
        return False

    server = serve(slow)
    client = HttpClient(user_agent="test/1")
    started = time.monotonic()
    with pytest.raises(HttpFailure) as info:
        client.request("GET", server.url + "/a", timeout=(2, 0.2))
    assert info.value.timed_out and time.monotonic() - started < 0.9


def test_refused_connection_is_a_transport_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HttpFailure) as info:
        HttpClient(user_agent="t").request("GET", f"http://127.0.0.1:{port}/", timeout=(1, 1))
    assert not info.value.timed_out


@pytest.mark.parametrize("url", ["localhost:80/x", "ftp://host/x", "http:///x",
                                 "http://host:notaport/x", "http://host/a b",
                                 "http://host/a\r\nX-Injected: 1"])
def test_unsendable_urls_are_invalid_requests(url: str) -> None:
    with pytest.raises(InvalidRequest):
        HttpClient(user_agent="t").request("GET", url, timeout=(1, 1))


def test_header_injection_is_refused(serve: Callable[[Behaviour], RawServer]) -> None:
    server = serve(keep_alive)
    with pytest.raises(InvalidRequest):
        HttpClient(user_agent="t").request("GET", server.url, headers={"X": "a\r\nY: b"},
                                           timeout=(1, 1))


def test_concurrent_requests_share_the_pool(serve: Callable[[Behaviour], RawServer]) -> None:
    server = serve(keep_alive)
    client = HttpClient(user_agent="t")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                assert client.request("GET", server.url + "/a", timeout=(2, 2)).status == 200
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(server.requests) == 160 and server.connections <= 8


def test_retry_after_seconds_and_http_date() -> None:
    from email.utils import formatdate

    from shared.http import retry_after_seconds

    assert retry_after_seconds("7") == 7.0 and retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("-3") == 0.0
    in_a_minute = retry_after_seconds(formatdate(time.time() + 60, usegmt=True))
    assert in_a_minute is not None and 55 <= in_a_minute <= 61
