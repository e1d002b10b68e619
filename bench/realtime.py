"""Realtime handler cost: real CloudEvents through functions-framework, per message.

`realtime/main.py` is loaded by `functions_framework.create_app` exactly as Cloud Functions loads
it, and each commercetools delivery is posted to its test client as a Pub/Sub CloudEvent
(binary mode), as tests/realtime.py does. The fakes run in their own process and answer at
once; the Klaviyo rate limiter is replaced by one with limits no run reaches.

Per message three figures:
- wall: `time.perf_counter()` around the call — includes the HTTP round trips to the fakes
  (loopback) and the fakes' own work;
- CPU: `time.thread_time()` of the calling thread around the same call — the test client runs
  the whole request (werkzeug's test client building it, Flask, functions-framework parsing the
  CloudEvent, our handler) on this thread, without the time spent waiting for answers;
- handler CPU: the same clock around the handler's body (`dispatch`: decoding the delivery,
  routing, commercetools reads, mapping, Klaviyo writes) — the connector's own cost, the target
  row's figure. The waits are the fakes' and the loopback's, which in production are Klaviyo's
  and commercetools' latency, not the connector's overhead.
The CPU is split further into the HTTP client's share (`bench.httpclock`: `shared.http.send`
encoding, sending and reading each call on this thread) and the rest, so a miss can be traced to the
number of calls or to the work per message; the HTTP calls per message and the CPU per call are
counted by the same clock.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench import data
from bench.bulk import connector_env, environment, quiet_logs, unlimited_limiter
from bench.fakes import FakeServers
from bench.httpclock import HttpClock, per_call_ms

ROOT = Path(__file__).resolve().parents[1]
REALTIME_SOURCE = ROOT / "realtime" / "main.py"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _cloud_event(delivery: dict[str, Any], seq: int) -> tuple[dict[str, str], bytes]:
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    message_id = f"bench-{seq}"
    event = CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished",
         "source": "//pubsub.googleapis.com/projects/bench/topics/ct-messages",
         "id": message_id},
        {"message": {"data": base64.b64encode(json.dumps(delivery).encode()).decode(),
                     "attributes": {}, "messageId": message_id,
                     "publishTime": "2026-01-01T00:00:00Z"},
         "subscription": "projects/bench/subscriptions/ct-messages-realtime"},
    )
    headers, body = to_binary(event)
    return dict(headers), body


class HandlerClock:
    """CPU seconds spent inside the realtime module's `dispatch` call, i.e. in the body of
    `handle_ct_message` after the framework has parsed the CloudEvent (decoding, routing,
    commercetools reads, mapping, Klaviyo writes: everything that is the connector's)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def installed(self, module: Any) -> Iterator[None]:
        original = module.dispatch
        clock = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                clock.seconds += time.thread_time() - start

        module.dispatch = timed
        try:
            yield
        finally:
            module.dispatch = original


def _measure(client: Any, fakes: FakeServers, clock: HttpClock, name: str,
             deliveries: list[dict[str, Any]], skip: int,
             profile_to: Path | None = None,
             handler_clock: HandlerClock | None = None) -> dict[str, Any]:
    prepared = [_cloud_event(d, i) for i, d in enumerate(deliveries)]
    klaviyo_before, ct_before = fakes.call("klaviyo_count"), fakes.call("ct_count")
    wall: list[float] = []
    cpu: list[float] = []
    http: list[float] = []
    calls: list[int] = []
    handler: list[float] = []
    handler_clock = handler_clock or HandlerClock()
    profiler = None
    if profile_to is not None:  # figures taken under a profiler are inflated: a separate run
        import cProfile

        profiler = cProfile.Profile(time.thread_time)  # CPU, not waits for the fakes
        profiler.enable()
    for i, (headers, body) in enumerate(prepared):
        (h0, n0), d0 = clock.reading(), handler_clock.seconds
        w0, c0 = time.perf_counter(), time.thread_time()
        response = client.post("/", headers=headers, data=body)
        c1, w1 = time.thread_time(), time.perf_counter()
        if response.status_code != 200:
            raise RuntimeError(f"{name} delivery {i} answered {response.status_code}")
        if i == 0:
            first_cpu = c1 - c0
        h1, n1 = clock.reading()
        if i >= skip:
            wall.append(w1 - w0)
            cpu.append(c1 - c0)
            http.append(h1 - h0)
            calls.append(n1 - n0)
            handler.append(handler_clock.seconds - d0)
    if profiler is not None and profile_to is not None:
        profiler.disable()
        profile_to.mkdir(parents=True, exist_ok=True)
        slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
        profiler.dump_stats(profile_to / f"realtime-{slug}.prof")
    klaviyo_requests = fakes.call("klaviyo_count") - klaviyo_before
    ct_requests = fakes.call("ct_count") - ct_before
    own = [c - h for c, h in zip(cpu, http, strict=True)]
    ms = 1000.0
    return {
        "message": name,
        "messages": len(wall),
        "wall_ms_p50": round(percentile(wall, 50) * ms, 3),
        "wall_ms_p99": round(percentile(wall, 99) * ms, 3),
        "handler_cpu_ms_p50": round(percentile(handler, 50) * ms, 3),
        "handler_cpu_ms_p99": round(percentile(handler, 99) * ms, 3),
        "cpu_ms_p50": round(percentile(cpu, 50) * ms, 3),
        "cpu_ms_p99": round(percentile(cpu, 99) * ms, 3),
        "cpu_ms_mean": round(sum(cpu) / len(cpu) * ms, 3),
        "http_client_cpu_ms_p50": round(percentile(http, 50) * ms, 3),
        "http_calls_per_message": round(sum(calls) / len(calls), 2),
        "cpu_per_http_call_ms": per_call_ms(sum(http), sum(calls)),
        "cpu_without_http_client_ms_p50": round(percentile(own, 50) * ms, 3),
        "cpu_without_http_client_ms_p99": round(percentile(own, 99) * ms, 3),
        "klaviyo_requests_per_message": round(klaviyo_requests / len(prepared), 2),
        "ct_requests_per_message": round(ct_requests / len(prepared), 2),
        "first_cpu_ms": round(first_cpu * ms, 3),
    }


def run(fakes: FakeServers, *, messages: int = 300, warmup: int = 30,
        profile_to: Path | None = None,
        progress: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    count = messages + warmup
    fakes.call("load_realtime", count)
    fakes.call("reset_klaviyo")
    quiet_logs()
    env = {**connector_env(fakes), "REALTIME_DEADLINE_SECONDS": "30"}
    clock = HttpClock()
    with environment(env), unlimited_limiter(), clock.installed(), ExitStack() as stack:
        from functions_framework import create_app

        client = create_app("handle_ct_message", str(REALTIME_SOURCE)).test_client()
        handler_clock = HandlerClock()
        stack.enter_context(handler_clock.installed(sys.modules["main"]))
        cases: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
            ("CustomerCreated", data.rt_customer_created),
            ("OrderCreated (5 lines)", lambda i: data.rt_order_created(i, count)),
            ("OrderStateChanged (Complete, 5 lines)",
             lambda i: data.rt_order_state_changed(i, count)),
            ("PaymentTransactionStateChanged (refund, 5 lines)",
             lambda i: data.rt_refund_succeeded(i, count)),
            ("Category ResourceUpdated (root, 5 descendants)", data.rt_category_updated),
            # First publish: the item is new (update answers 404, then create + 10 variants).
            ("ProductPublished (10 variants, new item)", data.rt_product_published),
            # Republish after an edit: update the item, list its variants, update all 10.
            ("ProductPublished (10 variants, edited)", data.rt_product_published),
            # Republish with nothing changed: update the item, list the variants, no writes.
            ("ProductPublished (10 variants, unchanged)", data.rt_product_published),
        ]
        results = []
        for name, make in cases:
            progress(f"realtime {name}: {messages} messages (+{warmup} warm-up)")
            if "edited" in name:
                fakes.call("edit_realtime_products", count)
            deliveries = [make(i) for i in range(count)]
            results.append(_measure(client, fakes, clock, name, deliveries, warmup, profile_to,
                                    handler_clock))
    return results
