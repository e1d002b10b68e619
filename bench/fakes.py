"""The commercetools and Klaviyo fakes (tests/fakes), served from a separate process.

Separate, so that the benchmark process's CPU time is the connector's alone: the fakes parse,
validate and store every request, which on a 2-core machine would otherwise be counted as ours.
The benchmark talks to the process over a pipe (`FakeServers`): load data, reset Klaviyo, read
what Klaviyo received, read the process's CPU time.

`IndexedKlaviyo` makes the Klaviyo fake scale to tens of thousands of records without changing
what it answers or checks: it finds profiles by identifier through an index instead of scanning
every profile (the scan made a 10,000-profile import quadratic), and answers `any(ids,[...])`
catalog filters with a set instead of a list scan per object. Every validation is the original's.
The commercetools fake itself copies only the page it answers. Both serve HTTP/1.1 keep-alive
(`KeepAliveHandler`), as the real APIs do.
"""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Self

from werkzeug.serving import WSGIRequestHandler, make_server

from bench import data
from bench.data import Doc
from tests.fakes.commercetools import FakeCommercetools
from tests.fakes.klaviyo import MATCHED_IDENTIFIERS, FakeKlaviyo, parse_filter


class KeepAliveHandler(WSGIRequestHandler):
    """Werkzeug's development server closes every connection after one answer; Klaviyo and
    commercetools keep them open. Without keep-alive each request of the code under test would
    pay for a new connection, which production (a pooled session) does not.

    Werkzeug closes because after answering it drains the socket, which on an open connection
    would swallow the next request. Here the request body is read first (by its Content-Length:
    the connector never sends chunked bodies) and the drain finds nothing left."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # answers go out as written (no delayed-ACK stalls)
    _body = b""

    def run_wsgi(self) -> None:
        socket_reader = self.rfile
        length = int(self.headers.get("Content-Length") or 0)
        self._body = socket_reader.read(length) if length > 0 else b""
        self.rfile = io.BytesIO()
        try:
            super().run_wsgi()
        finally:
            self.rfile = socket_reader

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        environ["wsgi.input"] = io.BytesIO(self._body)
        return environ

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "connection" and value.lower() == "close":
            return
        super().send_header(keyword, value)

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def _start(fake: Any, host: str, name: str) -> None:
    fake._server = make_server(host, 0, fake, threaded=True, request_handler=KeepAliveHandler)
    fake._thread = threading.Thread(target=fake._server.serve_forever, name=name, daemon=True)
    fake._thread.start()


def _norm(name: str, value: Any) -> Any:
    return str(value).casefold() if name == "email" else value


class IndexedKlaviyo(FakeKlaviyo):
    def start(self) -> IndexedKlaviyo:
        _start(self, self.host, "bench-klaviyo")
        return self

    def reset(self) -> None:
        super().reset()
        self._ident_index: dict[str, dict[Any, str]] = {n: {} for n in MATCHED_IDENTIFIERS}

    def _apply_profile(  # type: ignore[override]  # an instance method: it indexes
            self, profile: dict[str, Any], attrs: dict[str, Any]) -> None:
        FakeKlaviyo._apply_profile(profile, attrs)
        stored = profile["attributes"]
        for name in MATCHED_IDENTIFIERS:
            value = stored.get(name)
            if value not in (None, ""):
                try:
                    self._ident_index[name].setdefault(_norm(name, value), profile["id"])
                except TypeError:  # unhashable: the scan will find it
                    pass

    def _find_by_identifier(self, name: str, value: Any) -> str | None:
        if value in (None, ""):
            return None
        try:
            key = _norm(name, value)
            pid = self._ident_index[name].get(key)
        except TypeError:
            return super()._find_by_identifier(name, value)
        if pid is None:
            # Every identifier a profile holds was indexed when it was written.
            return None
        profile = self.profiles.get(pid)
        if profile is None or _norm(name, profile["attributes"].get(name)) != key:
            # The indexed holder was deleted or changed; another profile may hold it now.
            return super()._find_by_identifier(name, value)
        return pid

    def _catalog_list(self, spec: Any, query: Any, path: str,
                      only: Any = None) -> tuple[int, Any, dict[str, str]]:
        expression = query.get("filter")
        terms = parse_filter(expression) if expression else []
        if len(terms) == 1 and terms[0][:2] == ("any", "ids") and isinstance(terms[0][2], list):
            wanted = set(terms[0][2])
            selected = [o for cid, o in self.catalog_state(spec.kind).items()
                        if cid in wanted and (only is None or only(o))]
            extra = {k: v for k, v in query.items() if k != "page[cursor]"}
            return self._paged([self._catalog_resource(spec, o) for o in selected], query,
                               path, self.page_size, extra)
        return super()._catalog_list(spec, query, path, only)


class IndexedCommercetools(FakeCommercetools):
    """The commercetools fake on a keep-alive server."""

    def start(self) -> IndexedCommercetools:
        _start(self, "127.0.0.1", "bench-commercetools")
        return self


# ---- data sets ------------------------------------------------------------------------------


def _put(ct: FakeCommercetools, resource: str, doc: Doc) -> None:
    """`ct.add` without its two deep copies (the generators build fresh documents)."""
    with ct._lock:
        ct._store[resource][doc["id"]] = doc


def load_bulk(ct: FakeCommercetools, n: int) -> dict[str, int]:
    """N customers, N orders (+ payments), N products, and the category tree."""
    for doc in data.categories():
        _put(ct, "categories", doc)
    for i in range(n):
        _put(ct, "customers", data.customer(i))
    for i in range(n):
        _put(ct, "products", data.product(i))
    for i in range(n):
        order, payment = data.order(i, n, product_pool=min(n, data.ORDER_PRODUCT_POOL))
        _put(ct, "payments", payment)
        _put(ct, "orders", order)
    return {"customers": n, "orders": n, "products": n}


def load_realtime(ct: FakeCommercetools, n: int) -> dict[str, int]:
    """What the realtime deliveries `data.rt_*(i)`, i < n, name."""
    for doc in data.categories():
        _put(ct, "categories", doc)
    for i in range(n):
        _put(ct, "customers", data.customer(i, data.RT_PREFIX))
    for i in range(max(n, 100)):  # orders name products among the first 100
        _put(ct, "products", data.product(i, data.RT_PREFIX, data.RT_PRODUCT_VARIANTS))
    for i in range(n):
        order, payment = data.order(i, n, prefix=data.RT_PREFIX, lines=data.RT_ORDER_LINES,
                                    product_pool=100)
        _put(ct, "payments", payment)
        _put(ct, "orders", order)
    return {"customers": n, "orders": n, "products": max(n, 100)}


def edit_realtime_products(ct: FakeCommercetools, n: int) -> int:
    """A merchant's edit of the first n realtime products' description (items and all their
    variants carry it, so a republish has to rewrite them)."""
    with ct._lock:
        for i in range(n):
            doc = ct._store["products"][data.doc_id(data.RT_PREFIX + "product", i)]
            for key in ("current", "staged"):
                description = doc["masterData"][key]["description"]
                description["en"] = description["en"].removesuffix(" (edited)") + " (edited)"
    return n


# ---- what Klaviyo received ------------------------------------------------------------------


def endpoint(method: str, path: str) -> str:
    """`POST /api/profile-bulk-import-jobs`, `GET /api/catalog-item-bulk-create-jobs/{id}`, ..."""
    from shared.klaviyo.transport import path_template

    return f"{method} {path_template(path)}"


def _event_metrics(body: Any) -> Counter[str]:
    metrics: Counter[str] = Counter()
    entries = (((body or {}).get("data") or {}).get("attributes") or {}).get(
        "events-bulk-create", {}).get("data") or []
    for entry in entries:
        for event in ((entry.get("attributes") or {}).get("events") or {}).get("data") or []:
            name = (((event.get("attributes") or {}).get("metric") or {}).get("data") or {}).get(
                "attributes", {}).get("name")
            metrics[str(name)] += 1
    return metrics


def klaviyo_summary(klaviyo: FakeKlaviyo) -> dict[str, Any]:
    requests = list(klaviyo.requests)
    metrics: Counter[str] = Counter()
    for r in requests:
        if r.path == "/api/event-bulk-create-jobs" and r.method == "POST":
            metrics.update(_event_metrics(r.json))
    return {
        "sequence": [[r.method, r.path, r.status] for r in requests],
        "event_metrics": dict(metrics),
        "stored": {"profiles": len(klaviyo.profiles), "events": len(klaviyo.events),
                   "items": len(klaviyo.items), "variants": len(klaviyo.variants),
                   "categories": len(klaviyo.categories)},
        "internal_errors": list(klaviyo.internal_errors),
    }


# ---- the server process ---------------------------------------------------------------------


def serve(commands: IO[str], answers: IO[str]) -> None:
    """Start both fakes, announce their addresses, then answer JSON-line commands
    `[name, args]` with `["ok", value]` or `["error", traceback]` until `["stop", []]`."""
    ct = IndexedCommercetools().start()
    klaviyo = IndexedKlaviyo().start()
    klaviyo.job_status_sequence = []  # bulk jobs are complete at the first poll

    def reset_klaviyo() -> None:
        klaviyo.reset()
        klaviyo.job_status_sequence = []

    handlers: dict[str, Callable[..., Any]] = {
        "load_bulk": lambda n: load_bulk(ct, n),
        "load_realtime": lambda n: load_realtime(ct, n),
        "edit_realtime_products": lambda n: edit_realtime_products(ct, n),
        "reset_klaviyo": reset_klaviyo,
        "klaviyo_summary": lambda: klaviyo_summary(klaviyo),
        "klaviyo_count": lambda: len(klaviyo.requests),
        "ct_count": lambda: len(ct.requests),
        "cpu": time.process_time,
    }

    def answer(value: Any) -> None:
        answers.write(json.dumps(value) + "\n")
        answers.flush()

    answer({"ct": {"url": ct.url, "project_key": ct.project_key, "client_id": ct.client_id,
                   "client_secret": ct.client_secret, "scopes": " ".join(ct.scopes)},
            "klaviyo": {"url": klaviyo.url, "api_key": klaviyo.api_key}})
    try:
        for line in commands:
            command, args = json.loads(line)
            if command == "stop":
                break
            try:
                answer(["ok", handlers[command](*args)])
            except Exception:  # noqa: BLE001 - any failure goes back to the benchmark
                answer(["error", traceback.format_exc()])
    finally:
        ct.stop()
        klaviyo.stop()


class FakeServers:
    """Handle on the fake-server process (`python -m bench.fakes`); a context manager."""

    def __init__(self, timeout: float = 60) -> None:
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.fakes"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=root, env=env)
        self.info: dict[str, Any] = self._read(timeout, "start")

    def _read(self, timeout: float, what: str) -> Any:
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        line = self._process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"fake servers: no answer to {what} "
                               f"(exit code {self._process.poll()})")
        return json.loads(line)

    def call(self, command: str, *args: Any, timeout: float = 1800) -> Any:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps([command, list(args)]) + "\n")
        self._process.stdin.flush()
        status, value = self._read(timeout, command)
        if status != "ok":
            raise RuntimeError(f"fake servers failed on {command}:\n{value}")
        return value

    @property
    def pid(self) -> int:
        return self._process.pid

    def env(self) -> dict[str, str]:
        """Connector settings pointing at the fakes."""
        ct, klaviyo = self.info["ct"], self.info["klaviyo"]
        return {
            "CTP_PROJECT_KEY": ct["project_key"], "CTP_CLIENT_ID": ct["client_id"],
            "CTP_CLIENT_SECRET": ct["client_secret"], "CTP_SCOPES": ct["scopes"],
            "CTP_API_URL": ct["url"], "CTP_AUTH_URL": ct["url"],
            "KLAVIYO_API_KEY": klaviyo["api_key"], "KLAVIYO_BASE_URL": klaviyo["url"],
        }

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                assert self._process.stdin is not None
                self._process.stdin.write(json.dumps(["stop", []]) + "\n")
                self._process.stdin.close()
                self._process.wait(10)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self._process.terminate()
                self._process.wait(5)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["FakeServers", "IndexedCommercetools", "IndexedKlaviyo", "endpoint",
           "klaviyo_summary", "load_bulk", "load_realtime", "serve"]


if __name__ == "__main__":
    # The protocol owns stdout; anything else printed goes to stderr.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr
    serve(sys.stdin, protocol)
