"""Bulk throughput: whole sync jobs through the real job runner in local mode.

`build_runner(settings, local=True)` — the embedded job store and the in-process task queue, the
same runner and exporters the Cloud Functions run — against the commercetools and Klaviyo fakes
in their own process. The client-side rate limiter is replaced by one with limits no run can
reach (its bookkeeping still runs), so the wall time shows our speed; what the real limiter would
impose is computed by replaying the recorded request sequence through `RateLimiter` with its
default limits on a virtual clock.

CPU is `time.process_time()` of this process (all threads: the task worker, the HTTP clients,
the job store) around the job; the fakes' CPU is measured in their own process.
"""

from __future__ import annotations

import cProfile
import io
import math
import os
import pstats
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.fakes import FakeServers, endpoint
from bench.floor import BULK_BATCH, is_bulk_write
from bench.httpclock import HttpClock, per_call_ms

KINDS = ("customers", "orders", "products")

# Variables that would select the GCP backend or read a developer's .env.
_CLEARED = ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
            "K_SERVICE", "BULK_BACKEND")


def connector_env(fakes: FakeServers) -> dict[str, str]:
    return {
        **fakes.env(),
        "CONNECTOR_ENV_FILE": os.devnull,
        "LOG_LEVEL": "INFO",  # as deployed; the log stream goes to /dev/null (see quiet_logs)
        "PREFERRED_LOCALE": "en",
        "PREFERRED_CURRENCY": "EUR",
        "PRODUCT_URL_TEMPLATE": "https://shop.example.com/p/{slug}?sku={sku}",
        "BULK_LOCAL_STATE_FILE": "",  # embedded state in memory
        "BULK_JOB_POLL_SECONDS": "0.01",  # the fake's catalog jobs are done at the first poll
    }


@contextmanager
def environment(values: Mapping[str, str], cleared: tuple[str, ...] = _CLEARED) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in (*values, *cleared)}
    for k in cleared:
        os.environ.pop(k, None)
    os.environ.update(values)
    from shared.config import get_settings

    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def quiet_logs() -> None:
    """The connector logs JSON lines to stdout; keep them (formatting and writing cost included)
    but send them to /dev/null so they do not mix with the benchmark's table."""
    import logging

    from shared import log

    log.configure("INFO")
    for handler in logging.getLogger("connector").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives with the process


@contextmanager
def unlimited_limiter() -> Iterator[None]:
    """The process-wide Klaviyo limiter, with limits no benchmark run reaches."""
    from shared.klaviyo import limiter

    huge = {name: (limiter.Rate(10**9, 1.0),) for name in limiter.DEFAULT_LIMITS}
    saved = limiter._shared
    limiter._shared = limiter.RateLimiter(huge)
    try:
        yield
    finally:
        limiter._shared = saved


def limiter_seconds(sequence: list[tuple[str, str]], repeat: float = 1.0) -> float:
    """Seconds the default RateLimiter makes this request sequence (repeated `repeat` times)
    wait, with requests themselves taking no time (a virtual clock)."""
    from shared.klaviyo.limiter import RateLimiter
    from shared.klaviyo.transport import path_template

    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(clock=lambda: now[0], sleep=sleep)
    templates = [(m, path_template(p)) for m, p in sequence]
    whole, part = divmod(repeat, 1.0)
    replay = templates * int(whole) + templates[: round(part * len(templates))]
    for method, template in replay:
        limiter.acquire(method, template)
    return now[0]


def bulk_payloads(kind: str, sent: int, summary: Mapping[str, Any]) -> dict[str, list[int]]:
    """Per bulk write endpoint: [records sent through it, records a request may carry]."""
    if kind == "customers":
        return {"POST /api/profile-bulk-import-jobs": [sent, BULK_BATCH["profiles"]]}
    if kind == "orders":
        events = sum(summary["event_metrics"].values())
        return {"POST /api/event-bulk-create-jobs": [events, BULK_BATCH["events"]]}
    return {
        "POST /api/catalog-item-bulk-create-jobs": [sent, BULK_BATCH["catalog"]],
        "POST /api/catalog-variant-bulk-create-jobs": [summary["stored"]["variants"],
                                                       BULK_BATCH["catalog"]],
    }


def minimum_requests(payloads: Mapping[str, list[int]]) -> dict[str, int]:
    """The fewest bulk write requests the endpoints' batch sizes allow for these records."""
    return {e: math.ceil(records / batch) for e, (records, batch) in payloads.items()}


class _SyncQueue:
    """Page tasks run on the calling thread (for profiling: cProfile sees one thread)."""

    def __init__(self) -> None:
        self.tasks: list[Any] = []

    def publish(self, task: Any) -> None:
        self.tasks.append(task)


def _runner(settings: Any, *, synchronous: bool) -> Any:
    from shared.bulk.runner import Runner, RunnerConfig, build_runner, default_exporters
    from shared.state.memory_store import MemoryStore

    if not synchronous:
        return build_runner(settings, local=True)
    queue: Any = _SyncQueue()
    return Runner(MemoryStore(None), queue, default_exporters(settings),
                  config=RunnerConfig.from_settings(settings))


def run_kind(kind: str, n: int, fakes: FakeServers, *,
             profile_to: Path | None = None) -> dict[str, Any]:
    """Run one whole sync of `kind` and measure it."""
    import gc

    from shared.config import get_settings

    fakes.call("reset_klaviyo")
    settings = get_settings()
    synchronous = profile_to is not None
    runner = _runner(settings, synchronous=synchronous)
    gc.collect()
    fake_cpu0 = fakes.call("cpu")
    http_clock = HttpClock()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    profiler = cProfile.Profile() if synchronous else None
    if profiler is not None:
        profiler.enable()
    with http_clock.installed():
        job = runner.start(kind)
        if synchronous:
            while runner.queue.tasks:
                runner.run_task(runner.queue.tasks.pop(0))
        else:
            if not runner.queue.wait_idle(timeout=3600):
                raise RuntimeError(f"{kind} sync did not finish within an hour")
    if profiler is not None:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    http_seconds, http_calls = http_clock.reading()
    fake_cpu = fakes.call("cpu") - fake_cpu0
    if not synchronous:
        runner.queue.close()
    job = runner.job(job.id)
    summary = fakes.call("klaviyo_summary")
    if summary["internal_errors"]:
        raise RuntimeError("the Klaviyo fake crashed:\n" + "\n".join(summary["internal_errors"]))

    sequence = [(m, p) for m, p, _ in summary["sequence"]]
    by_endpoint = Counter(endpoint(m, p) for m, p in sequence)
    failed_requests = sum(1 for _, _, status in summary["sequence"]
                          if status is None or status >= 400)
    writes = {e: c for e, c in by_endpoint.items() if is_bulk_write(e)}
    payloads = bulk_payloads(kind, job.counts.sent, summary)
    minimum = minimum_requests(payloads)
    per_1000 = 1000 / n
    result: dict[str, Any] = {
        "kind": kind,
        "n": n,
        "status": job.status.value if job else "missing",
        "counts": job.counts.model_dump() if job else {},
        "batches": job.seq if job else 0,
        "wall_seconds": round(wall, 3),
        "items_per_second": round(n / wall, 1),
        "cpu_seconds": round(cpu, 3),
        "cpu_seconds_per_1000": round(cpu * per_1000, 4),
        "items_per_cpu_second": round(n / cpu, 1) if cpu else None,
        "fake_cpu_seconds": round(fake_cpu, 3),
        "http_calls": http_calls,
        "http_cpu_seconds": round(http_seconds, 3),
        "cpu_per_http_call_ms": per_call_ms(http_seconds, http_calls),
        "klaviyo_requests": dict(sorted(by_endpoint.items())),
        "klaviyo_requests_per_1000": {e: round(c * per_1000, 3)
                                      for e, c in sorted(by_endpoint.items())},
        "klaviyo_failed_requests": failed_requests,
        "bulk_writes_per_1000": round(sum(writes.values()) * per_1000, 3),
        "min_bulk_writes_per_1000": round(sum(minimum.values()) * per_1000, 3),
        "bulk_payloads": payloads,  # endpoint: [records, records per request]
        "all_requests_per_1000": round(len(sequence) * per_1000, 3),
        "event_metrics": summary["event_metrics"],
        "stored_in_klaviyo": summary["stored"],
        "limiter_wait_seconds": round(limiter_seconds(sequence), 2),
        "limiter_wait_seconds_100k": round(limiter_seconds(sequence, 100_000 / n), 1),
        "_sequence": sequence,
    }
    ratio = result["bulk_writes_per_1000"] / result["min_bulk_writes_per_1000"] \
        if result["min_bulk_writes_per_1000"] else math.inf
    result["bulk_writes_vs_min"] = round(ratio, 3)
    if profiler is not None and profile_to is not None:
        profile_to.mkdir(parents=True, exist_ok=True)
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text).strip_dirs()
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
        (profile_to / f"bulk-{kind}.txt").write_text(text.getvalue())
        profiler.dump_stats(str(profile_to / f"bulk-{kind}.pstats"))
        result["profile"] = str(profile_to / f"bulk-{kind}.txt")
    return result


def run(n: int, fakes: FakeServers, *, kinds: tuple[str, ...] = KINDS,
        profile_to: Path | None = None,
        progress: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    quiet_logs()
    results = []
    with environment(connector_env(fakes)), unlimited_limiter():
        for kind in kinds:
            progress(f"bulk {kind}: N={n:,}")
            result = run_kind(kind, n, fakes)
            if profile_to is not None:
                progress(f"bulk {kind}: profiling a second run (cProfile)")
                profiled = run_kind(kind, n, fakes, profile_to=profile_to)
                result["profile"] = profiled["profile"]
                result["profiled_cpu_seconds"] = profiled["cpu_seconds"]
            results.append(result)
    return results
