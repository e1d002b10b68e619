"""Scale scenario: whole customers and orders jobs at Klaviyo's rate-limit floor.

`python -m bench --only scale [--scale-records 50000] [--scale-factor 1] --out FILE`

What runs is the connector's own job runner and exporters (`Runner`, `default_exporters`), in
several worker processes, over a job store they share (the embedded store on one file, locked per
transaction) and one task queue (a multiprocessing queue standing in for Pub/Sub). Partitioned
jobs (the settings' default K) get one worker process per partition, as deploy's
--max-instances allows; the single-chain design (K = 1, today's) gets one.

The APIs, in their own process, answer with configurable latency:
- commercetools: the tests' fake (OAuth, lookups, product reads), except the keyset pages of
  customers and orders, which come from the same documents sorted and serialised once (the fake
  scans and deep-copies every document per page: at 50,000 records that CPU, not the latency,
  would set the pace). Orders come with their payments expanded, as the fake expands them.
- Klaviyo: the two bulk endpoints, with their per-account limits enforced across every worker
  process in Klaviyo's fixed 1 s and 60 s windows (a request over either is answered 429 with
  Retry-After, and counted). Request shapes are checked by the strict fake in the tests; here the
  stub counts profiles and events received, so the run proves every record arrived.

All limits (Klaviyo's and the connector's own view of them) are multiplied and all latencies
divided by `--scale-factor`, so that on a small machine the run can be bound by the simulated
APIs rather than by CPU; every per-million figure is reported in unscaled seconds (measured ×
factor), and the floor and the ratio are computed under the same scale.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import queue as queue_mod
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

# Default latencies (seconds, unscaled) — the model of the real APIs.
LATENCY = {
    "customers_page": 0.3,
    "orders_page": 0.6,  # with payments expanded
    "lookup": 0.1,  # any other commercetools request (product reads, token)
    "events_post": 0.4,
    "profiles_post": 2.0,
}
# Klaviyo's per-account limits of the two bulk families (burst per second, steady per minute).
LIMITS = {"profile-bulk-import": (10, 150), "event-bulk-create": (10, 150)}
BATCH = {"customers": 10_000, "orders": 1_000}  # profiles / events per bulk request
FAMILY_OF_PATH = {"/api/profile-bulk-import-jobs": "profile-bulk-import",
                  "/api/event-bulk-create-jobs": "event-bulk-create"}


# ---- the APIs' process ------------------------------------------------------------------------


class KlaviyoLimits:
    """Klaviyo's bulk endpoints: fixed 1 s / 60 s windows per family for the whole account."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.lock = threading.Lock()
        self.windows: dict[tuple[str, str, int], int] = Counter()
        self.stats: Counter[str] = Counter()
        self.latency = {"profile-bulk-import": LATENCY["profiles_post"] / factor,
                        "event-bulk-create": LATENCY["events_post"] / factor}

    def admit(self, family: str) -> float | None:
        """None if the request is within the limits (counted), else the Retry-After."""
        burst, steady = LIMITS[family]
        now = time.time()
        with self.lock:
            second = int(now)  # fixed windows, scaled: `factor` times as many per window
            minute = int(now // 60)
            if self.windows[(family, "s", second)] >= burst * self.factor:
                return max(0.01, second + 1 - now)
            if self.windows[(family, "m", minute)] >= steady * self.factor:
                return max(0.01, (minute + 1) * 60 - now)
            self.windows[(family, "s", second)] += 1
            self.windows[(family, "m", minute)] += 1
            return None

    def __call__(self, environ: dict, start_response: Any) -> Any:
        req = Request(environ)
        if req.path == "/_stats":
            with self.lock:
                body = dict(self.stats)
            return Response(json.dumps(body), content_type="application/json")(
                environ, start_response)
        if req.path == "/_reset":
            with self.lock:
                self.stats.clear()
            return Response("{}", content_type="application/json")(environ, start_response)
        if req.method == "GET" and req.path.startswith("/api/profile-bulk-import-jobs/"):
            return self._job_check(req)(environ, start_response)
        family = FAMILY_OF_PATH.get(req.path)
        if req.method != "POST" or family is None:
            return Response(json.dumps({"errors": [{"status": 404}]}), status=404)(
                environ, start_response)
        retry_after = self.admit(family)
        if retry_after is not None:
            with self.lock:
                self.stats[f"{family}:429"] += 1
            return Response(json.dumps({"errors": [{"status": 429, "code": "throttled"}]}),
                            status=429, headers={"Retry-After": str(math.ceil(retry_after))},
                            content_type="application/json")(environ, start_response)
        body = json.loads(req.get_data())
        time.sleep(self.latency[family])
        if family == "profile-bulk-import":
            records = len(body["data"]["attributes"]["profiles"]["data"])
            answer = {"data": {"type": "profile-bulk-import-job", "id": uuid.uuid4().hex,
                               "attributes": {"status": "queued"}}}
        else:
            entries = body["data"]["attributes"]["events-bulk-create"]["data"]
            records = sum(len(e["attributes"]["events"]["data"]) for e in entries)
            answer = None
        with self.lock:
            self.stats[f"{family}:requests"] += 1
            self.stats[f"{family}:records"] += records
        return Response(json.dumps(answer) if answer else b"", status=202,
                        content_type="application/vnd.api+json")(environ, start_response)


    def _job_check(self, req: Request) -> Response:
        """`GET /api/profile-bulk-import-jobs/{id}`: the connector checks each import job before
        its sync completes (shared/bulk/verification.py). It shares the family's limits with
        the POSTs, as at Klaviyo; here every job is complete, nothing refused."""
        family = "profile-bulk-import"
        retry_after = self.admit(family)
        if retry_after is not None:
            with self.lock:
                self.stats[f"{family}:429"] += 1
            return Response(json.dumps({"errors": [{"status": 429, "code": "throttled"}]}),
                            status=429, headers={"Retry-After": str(math.ceil(retry_after))},
                            content_type="application/json")
        time.sleep(LATENCY["lookup"] / self.factor)
        with self.lock:
            self.stats[f"{family}:checks"] += 1
        job_id = req.path.rstrip("/").rsplit("/", 1)[-1]
        return Response(json.dumps({"data": {
            "type": "profile-bulk-import-job", "id": job_id,
            "attributes": {"status": "complete", "failed_count": 0}}}),
            content_type="application/vnd.api+json")


class FastPages:
    """The commercetools fake, with customers and orders keyset pages served from presorted,
    preserialised documents (same documents, same expansion), after the page's latency."""

    def __init__(self, ct: Any, factor: float) -> None:
        self.ct = ct
        self.factor = factor
        self.sorted: dict[str, tuple[list[str], list[str]]] = {}

    def index(self, resource: str, expand: list[str]) -> None:
        docs = sorted(self.ct._store[resource].values(), key=lambda d: d["id"])
        texts = [json.dumps(self.ct._expand(json.loads(json.dumps(d)), expand),
                            separators=(",", ":")) for d in docs]
        self.sorted[resource] = ([d["id"] for d in docs], texts)

    def __call__(self, environ: dict, start_response: Any) -> Any:
        import bisect
        import re

        req = Request(environ)
        parts = [p for p in req.path.split("/") if p]
        resource = parts[1] if len(parts) == 2 else None
        if req.method == "GET" and resource in self.sorted and \
                req.args.get("sort") == "id asc" and req.args.get("withTotal") == "false":
            after = through = None
            for where in req.args.getlist("where"):
                m = re.fullmatch(r'id (>|<=) "([^"]*)"', where)
                if not m:
                    break
                if m.group(1) == ">":
                    after = m.group(2)
                else:
                    through = m.group(2)
            else:
                time.sleep(LATENCY[f"{resource}_page"] / self.factor)
                ids, texts = self.sorted[resource]
                limit = int(req.args.get("limit", "20"))
                start = bisect.bisect_right(ids, after) if after is not None else 0
                end = bisect.bisect_right(ids, through) if through is not None else len(ids)
                page = texts[start:min(end, start + limit)]
                body = (f'{{"limit":{limit},"offset":0,"count":{len(page)},"results":['
                        + ",".join(page) + "]}")
                return Response(body, content_type="application/json")(environ, start_response)
        time.sleep(LATENCY["lookup"] / self.factor)
        return self.ct(environ, start_response)


def serve_apis(records: int, factor: float, conn: Any) -> None:
    """The APIs' process: load the data, serve, report addresses, wait for "stop"."""
    from bench import data
    from bench.fakes import IndexedCommercetools, KeepAliveHandler, _put
    from shared.bulk.exporters.orders import ORDER_EXPAND

    ct = IndexedCommercetools()
    for doc in data.categories():
        _put(ct, "categories", doc)
    pool = min(records, data.ORDER_PRODUCT_POOL)
    for i in range(pool):
        _put(ct, "products", data.product(i))
    for i in range(records):
        _put(ct, "customers", data.customer(i))
        order, payment = data.order(i, records, product_pool=pool)
        _put(ct, "payments", payment)
        _put(ct, "orders", order)
    pages = FastPages(ct, factor)
    pages.index("customers", [])
    pages.index("orders", list(ORDER_EXPAND))
    klaviyo = KlaviyoLimits(factor)
    servers = [make_server("127.0.0.1", 0, app, threaded=True, request_handler=KeepAliveHandler)
               for app in (pages, klaviyo)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ct_url, klaviyo_url = (f"http://127.0.0.1:{s.server_port}" for s in servers)
    conn.send({
        "CTP_PROJECT_KEY": ct.project_key, "CTP_CLIENT_ID": ct.client_id,
        "CTP_CLIENT_SECRET": ct.client_secret, "CTP_SCOPES": " ".join(ct.scopes),
        "CTP_API_URL": ct_url, "CTP_AUTH_URL": ct_url,
        "KLAVIYO_API_KEY": "pk_bench_scale", "KLAVIYO_BASE_URL": klaviyo_url,
        "_profiles": sum(1 for c in ct._store["customers"].values() if c.get("email")),
    })
    conn.recv()  # "stop"
    for server in servers:
        server.shutdown()


# ---- worker processes -------------------------------------------------------------------------


class SharedQueue:
    """The connector's TaskQueue over a multiprocessing queue (Pub/Sub's place)."""

    def __init__(self, q: Any) -> None:
        self.q = q

    def publish(self, task: Any) -> None:
        self.q.put(task.encode())


def _scaled_limits(factor: float) -> None:
    """The connector's view of Klaviyo's limits, scaled like the stub's (process limiter and the
    partitions' budget both read DEFAULT_LIMITS)."""
    from shared.klaviyo import limiter

    for name, rates in list(limiter.DEFAULT_LIMITS.items()):
        limiter.DEFAULT_LIMITS[name] = tuple(
            limiter.Rate(max(1, round(r.count * factor)), r.period) for r in rates)


def _environment(env: dict[str, str], store: str, partitions: int) -> None:
    for name in ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
                 "K_SERVICE", "BULK_BACKEND"):
        os.environ.pop(name, None)
    os.environ.update({k: v for k, v in env.items() if not k.startswith("_")})
    os.environ.update({
        "CONNECTOR_ENV_FILE": os.devnull, "LOG_LEVEL": "WARNING", "PREFERRED_LOCALE": "en",
        "PREFERRED_CURRENCY": "EUR", "BULK_LOCAL_STATE_FILE": store, "BULK_BACKEND": "local",
        "BULK_PARTITIONS_CUSTOMERS": str(partitions), "BULK_PARTITIONS_ORDERS": str(partitions),
    })


def worker(env: dict[str, str], store: str, partitions: int, factor: float, tasks: Any,
           ready: Any, stop: Any) -> None:
    import logging

    _environment(env, store, partitions)
    _scaled_limits(factor)
    from shared import log
    from shared.bulk.runner import Runner, RunnerConfig, default_exporters
    from shared.bulk.tasks import PageTask
    from shared.config import get_settings
    from shared.state.memory_store import MemoryStore

    log.configure("WARNING")
    for handler in logging.getLogger("connector").handlers:
        handler.stream = open(os.devnull, "w")  # type: ignore[attr-defined]
    settings = get_settings()
    runner = Runner(MemoryStore(store), SharedQueue(tasks), default_exporters(settings),
                    config=RunnerConfig.from_settings(settings))
    ready.put(os.getpid())
    while not stop.is_set():
        try:
            raw = tasks.get(timeout=0.2)
        except queue_mod.Empty:
            continue
        task = PageTask.decode(raw)
        try:
            runner.run_task(task)
        except Exception:  # noqa: BLE001 - as Pub/Sub: deliver it again a little later
            time.sleep(0.5)
            tasks.put(raw)


# ---- the driver -------------------------------------------------------------------------------


def _get(url: str) -> dict[str, Any]:
    import requests

    return requests.get(url, timeout=10).json()


def run_one(env: dict[str, Any], kind: str, partitions: int, factor: float,
            progress: Callable[[str], None]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    workdir = tempfile.mkdtemp(prefix="bench-scale-")
    store = str(Path(workdir) / "state.json")
    tasks, ready, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=worker, args=(env, store, partitions, factor, tasks, ready, stop),
                         daemon=True) for _ in range(partitions)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    _environment(env, store, partitions)
    from shared.bulk.runner import Runner, RunnerConfig
    from shared.config import get_settings
    from shared.state.memory_store import MemoryStore

    get_settings.cache_clear()
    settings = get_settings()
    driver = Runner(MemoryStore(store), SharedQueue(tasks), lambda k: None,  # type: ignore[arg-type, return-value]
                    config=RunnerConfig.from_settings(settings))
    _get(env["KLAVIYO_BASE_URL"] + "/_reset")
    started = time.monotonic()
    job = driver.start(kind)  # type: ignore[arg-type]
    last = 0.0
    while True:
        time.sleep(0.25)
        view = driver.job(job.id)
        assert view is not None
        if not view.live:
            break
        if time.monotonic() - last > 10:
            last = time.monotonic()
            progress(f"  {kind} K={partitions}: {view.status.value} read {view.counts.read:,}")
    wall = time.monotonic() - started
    stop.set()
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.terminate()
    stats = _get(env["KLAVIYO_BASE_URL"] + "/_stats")
    family = "profile-bulk-import" if kind == "customers" else "event-bulk-create"
    requests_sent = stats.get(f"{family}:requests", 0)
    received = stats.get(f"{family}:records", 0)
    items = received  # profiles / events that reached Klaviyo
    minimum = math.ceil(items / BATCH[kind]) if items else 0
    steady = LIMITS[family][1]
    floor_s = minimum * 60.0 / (steady * factor)  # at the scaled limit
    records = view.counts.read
    per_million = 1_000_000 / records if records else 0.0
    return {
        "kind": kind, "partitions": partitions, "status": view.status.value,
        "records": records, "klaviyo_records": items,
        "wall_s": round(wall, 1),
        "wall_s_per_million": round(wall * per_million * factor, 1),
        "floor_s_per_million": round(floor_s * per_million * factor, 1),
        "ratio_to_floor": round(wall / floor_s, 2) if floor_s else None,
        "klaviyo_429s": stats.get(f"{family}:429", 0),
        "klaviyo_job_checks": stats.get(f"{family}:checks", 0),  # verification GETs
        "requests": requests_sent,
        "requests_per_1000": round(1000 * requests_sent / records, 3) if records else None,
        "requests_min_per_1000": round(1000 * minimum / records, 3) if records else None,
        # At 1M records: the minimum plus, at most, one part-filled last request per partition.
        "requests_ratio_at_million": round(
            (math.ceil(items * per_million / BATCH[kind]) + partitions)
            / math.ceil(items * per_million / BATCH[kind]), 3) if items else None,
        "requests_ratio": round(requests_sent / minimum, 3) if minimum else None,
        "scale_factor": factor,
        "counts": view.counts.model_dump(),
    }


def run(records: int = 50_000, factor: float = 1.0, partitions: int | None = None,
        kinds: tuple[str, ...] = ("customers", "orders"),
        progress: Callable[[str], None] = lambda m: None) -> list[dict[str, Any]]:
    from shared.config import Settings

    k = partitions or Settings.model_fields["bulk_partitions_customers"].default
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    apis = ctx.Process(target=serve_apis, args=(records, factor, there), daemon=True)
    apis.start()
    progress(f"scale: loading {records:,} customers and orders into the APIs' process")
    env = here.recv()
    results = []
    try:
        for kind in kinds:
            for design in (k, 1):
                progress(f"scale: {kind} with {design} partition(s)")
                entry = run_one(env, kind, design, factor, progress)
                if kind == "customers":
                    entry["expected_klaviyo_records"] = env["_profiles"]
                results.append(entry)
                progress(f"scale: {kind} K={design}: {entry['wall_s']} s, ratio "
                         f"{entry['ratio_to_floor']}, 429s {entry['klaviyo_429s']}")
    finally:
        here.send("stop")
        apis.join(15)
        if apis.is_alive():
            apis.terminate()
    return results


def targets(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, on the partitioned runs."""
    out = []
    partitioned = [e for e in entries if e["partitions"] > 1]
    for e in partitioned:
        if e["kind"] == "orders":
            out.append({"target": "orders ≤ 1.2× Klaviyo's event floor",
                        "value": e["ratio_to_floor"], "ok": (e["ratio_to_floor"] or 99) <= 1.2})
        if e["kind"] == "customers":
            out.append({"target": "customers: 1M in ≤ 4 min (10M in ≤ 40 min)",
                        "value": e["wall_s_per_million"], "ok": e["wall_s_per_million"] <= 240})
        out.append({"target": f"{e['kind']}: 0 Klaviyo 429s to the bulk workers",
                    "value": e["klaviyo_429s"], "ok": e["klaviyo_429s"] == 0})
        out.append({"target": f"{e['kind']}: requests per 1,000 ≤ 1.1× the minimum (at 1M)",
                    "value": e["requests_ratio_at_million"],
                    "ok": (e["requests_ratio_at_million"] or 99) <= 1.1})
        out.append({"target": f"{e['kind']}: every record reached Klaviyo, job completed",
                    "value": e["status"], "ok": e["status"] == "completed"
                    and e["counts"]["failed"] == 0
                    and e.get("expected_klaviyo_records", e["klaviyo_records"])
                    == e["klaviyo_records"]})
    return out


def render(entries: list[dict[str, Any]]) -> str:
    lines = ["scale (Klaviyo limits enforced across worker processes; per 1M records, "
             "unscaled)",
             f"  {'kind':10} {'K':>3} {'records':>8} {'wall s/1M':>10} {'floor s/1M':>10} "
             f"{'ratio':>6} {'429s':>5} {'req/1000':>9} {'factor':>6}"]
    for e in entries:
        lines.append(f"  {e['kind']:10} {e['partitions']:>3} {e['records']:>8} "
                     f"{e['wall_s_per_million']:>10} {e['floor_s_per_million']:>10} "
                     f"{e['ratio_to_floor']!s:>6} {e['klaviyo_429s']:>5} "
                     f"{e['requests_per_1000']!s:>9} {e['scale_factor']:>6}")
    for t in targets(entries):
        lines.append(f"  {'ok  ' if t['ok'] else 'MISS'} {t['target']}: {t['value']}")
    return "\n".join(lines) + "\n"
