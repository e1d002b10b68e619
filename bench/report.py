"""Targets (pass/miss rows) and the printed table."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Issue 6's targets.
CUSTOMERS_PER_CPU_SECOND = 2000
ORDERS_PER_CPU_SECOND = 1000
REQUESTS_SLACK = 1.10  # within 10% of the minimum the batch sizes allow
FLOOR_SECONDS = 300  # 100k customers + 100k orders under 5 minutes
REALTIME_P50_MS = 5.0
REALTIME_IMPORT_RATIO = 3.0  # import time over a hello-world functions-framework function's

TARGET_IDS = (
    "bulk.customers.throughput",
    "bulk.orders.throughput",
    "bulk.customers.requests",
    "bulk.orders.requests",
    "bulk.products.requests",
    "floor.100k",
    "realtime.CustomerCreated.p50",
    "realtime.OrderCreated.p50",
    "realtime.ProductPublished.p50",
    "realtime.ProductPublished.new_item.p50",
    "realtime.ProductPublished.unchanged.p50",
    "coldstart.realtime.import_ratio",
    "coldstart.realtime.no_firestore_pubsub",
)


def _row(id: str, target: str, value: Any, unit: str, passed: bool | None,
         note: str = "") -> dict[str, Any]:
    return {"id": id, "target": target, "value": value, "unit": unit,
            "result": "n/a" if passed is None else ("pass" if passed else "miss"), "note": note}


def targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    bulk = {r["kind"]: r for r in results.get("bulk") or []}
    for kind, minimum in (("customers", CUSTOMERS_PER_CPU_SECOND),
                          ("orders", ORDERS_PER_CPU_SECOND)):
        run = bulk.get(kind)
        if run is not None:
            value = run["items_per_cpu_second"]
            rows.append(_row(f"bulk.{kind}.throughput", f">= {minimum:,} {kind}/s on one core",
                             value, f"{kind} per CPU-second", value >= minimum,
                             f"wall {run['items_per_second']:,.0f}/s with the fakes on the "
                             "same machine"))
    for kind in ("customers", "orders", "products"):
        run = bulk.get(kind)
        if run is not None:
            ratio = run["bulk_writes_vs_min"]
            rows.append(_row(
                f"bulk.{kind}.requests", "bulk write requests <= 110% of the batch-size minimum",
                f"{run['bulk_writes_per_1000']} vs {run['min_bulk_writes_per_1000']}",
                "requests per 1,000 items", ratio <= REQUESTS_SLACK,
                f"{ratio:.3f}x the minimum; all requests incl. reads: "
                f"{run['all_requests_per_1000']} per 1,000"))
    floor = results.get("floor")
    if floor:
        rows.append(_row("floor.100k", "100k customers + 100k orders: Klaviyo's floor < 5 min",
                         round(floor["ours_seconds"] / 60, 2), "minutes",
                         floor["ours_seconds"] < FLOOR_SECONDS,
                         f"reference plugin: {floor['reference_seconds'] / 3600:.1f} h "
                         f"({floor['ratio']}x)"))
    for run in results.get("realtime") or []:
        name = run["message"]
        key = name.split(" ")[0]
        for variant in ("new item", "unchanged"):
            if variant in name:
                key += "." + variant.replace(" ", "_")
        handler = run.get("handler_cpu_ms_p50", run["cpu_ms_p50"])
        rows.append(_row(f"realtime.{key}.p50", f"handler p50 < {REALTIME_P50_MS:g} ms",
                         handler, "ms CPU in handle_ct_message",
                         handler < REALTIME_P50_MS,
                         f"with the framework {run['cpu_ms_p50']} ms; "
                         f"without the HTTP client {run['cpu_without_http_client_ms_p50']} ms; "
                         f"wall {run['wall_ms_p50']} ms; "
                         f"{run['klaviyo_requests_per_message'] + run['ct_requests_per_message']:g}"
                         f" HTTP calls, {run.get('cpu_per_http_call_ms')} ms CPU each"))
    cold = results.get("cold_start") or {}
    realtime = cold.get("realtime")
    hello = cold.get("hello")
    if realtime and hello:
        ratio = realtime["import_cpu_ratio"]
        rows.append(_row("coldstart.realtime.import_ratio",
                         f"<= {REALTIME_IMPORT_RATIO:g}x a hello-world function's import",
                         ratio, "x (CPU time, median, fresh interpreter)",
                         ratio <= REALTIME_IMPORT_RATIO,
                         f"{realtime['import_cpu_ms']} ms CPU vs hello-world "
                         f"{hello['import_cpu_ms']} ms; wall {realtime['import_ms']} ms vs "
                         f"{hello['import_ms']} ms ({realtime['import_ratio']}x); "
                         f"{realtime['own_import_ms']} ms with functions-framework "
                         "already loaded"))
    if realtime:
        rows.append(_row("coldstart.realtime.no_firestore_pubsub",
                         "no Firestore/Pub/Sub client in the realtime path",
                         ", ".join(realtime["firestore_or_pubsub"]) or "none", "modules",
                         not realtime["firestore_or_pubsub"]))
    return rows


# ---- printing ---------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in cells:
        out.append("  ".join(c.rjust(w) if _numeric(c) else c.ljust(w)
                             for c, w in zip(r, widths, strict=True)))
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _numeric(text: str) -> bool:
    return bool(text) and text.replace(",", "").replace(".", "").replace("-", "").isdigit()


def render(results: Mapping[str, Any]) -> str:
    parts: list[str] = []
    meta = results.get("meta", {})
    parts.append(f"commercetools -> Klaviyo connector benchmark  ({meta.get('python', '')}, "
                 f"{meta.get('cpus', '?')} CPUs, commit {meta.get('commit', '?')})")
    calibration = meta.get("calibration_cpu_seconds")
    if calibration:
        parts.append("calibration (fixed workload, CPU s, start/end; higher = machine busy, all "
                     "CPU figures inflated alike): " + " / ".join(f"{c:.3f}" for c in calibration))
    bulk = results.get("bulk") or []
    if bulk:
        parts.append(f"\nBULK  N={bulk[0]['n']:,} per kind, local mode, limiter lifted "
                     "(CPU = this process; the fakes run in their own)")
        parts.append(_table(
            ["kind", "status", "wall s", "items/s", "CPU s/1k", "items/CPU-s", "fake CPU s",
             "bulk writes/1k", "min/1k", "all req/1k", "HTTP calls", "CPU/HTTP call ms",
             "limiter wait s (N)", "@100k s"],
            [[r["kind"], r["status"], r["wall_seconds"], r["items_per_second"],
              r["cpu_seconds_per_1000"], r["items_per_cpu_second"], r["fake_cpu_seconds"],
              r["bulk_writes_per_1000"], r["min_bulk_writes_per_1000"],
              r["all_requests_per_1000"], r.get("http_calls", ""),
              r.get("cpu_per_http_call_ms", ""), r["limiter_wait_seconds"],
              r["limiter_wait_seconds_100k"]] for r in bulk]))
        rows = []
        for r in bulk:
            for endpoint, per in r["klaviyo_requests_per_1000"].items():
                rows.append([r["kind"], endpoint, r["klaviyo_requests"][endpoint], per])
        parts.append("\nKlaviyo requests by endpoint")
        parts.append(_table(["kind", "endpoint", "requests", "per 1,000 items"], rows))
    floor = results.get("floor")
    if floor:
        parts.append(f"\nRATE-LIMIT FLOOR  N={floor['n']:,} customers + {floor['n']:,} orders "
                     "(Klaviyo steady limits: bulk jobs 150/min, L tier 700/min, events "
                     "3,500/min)")
        rows = []
        for kind in ("customers", "orders"):
            ours, ref = floor["ours"].get(kind), floor["reference"].get(kind)
            if ours is None or ref is None:
                continue
            rows.append([kind, ", ".join(f"{c:,} x {e}" for e, c in ours["requests"].items()),
                         ours["seconds"], ", ".join(f"{c:,} x {e}" for e, c in
                                                    ref["requests"].items()),
                         ref["request_seconds"], ref["sleep_seconds"], ref["seconds"]])
        rows.append(["total", "", floor["ours_seconds"], "", "", "",
                     floor["reference_seconds"]])
        parts.append(_table(["kind", "ours: requests", "ours s", "reference: requests",
                             "ref requests s", "ref sleeps s", "ref s"], rows))
        parts.append(f"ours {floor['ours_seconds'] / 60:.1f} min (both jobs at once "
                     f"{floor['ours_concurrent_seconds'] / 60:.1f} min); reference "
                     f"{floor['reference_seconds'] / 3600:.1f} h; ratio {floor['ratio']}x")
    realtime = results.get("realtime") or []
    if realtime:
        parts.append("\nREALTIME  per message, functions-framework test client, real "
                     "CloudEvents, fakes answering at once")
        parts.append(_table(
            ["message", "n", "wall p50 ms", "wall p99 ms", "handler CPU p50", "p99",
             "CPU p50 ms", "CPU p99 ms", "CPU mean ms",
             "HTTP client CPU p50", "CPU w/o HTTP client p50", "p99", "HTTP calls",
             "CPU/HTTP call ms", "Klaviyo calls", "CT calls", "first CPU ms"],
            [[r["message"], r["messages"], r["wall_ms_p50"], r["wall_ms_p99"],
              r.get("handler_cpu_ms_p50", ""), r.get("handler_cpu_ms_p99", ""), r["cpu_ms_p50"],
              r["cpu_ms_p99"], r.get("cpu_ms_mean", ""), r["http_client_cpu_ms_p50"],
              r["cpu_without_http_client_ms_p50"], r["cpu_without_http_client_ms_p99"],
              r.get("http_calls_per_message", ""), r.get("cpu_per_http_call_ms", ""),
              r["klaviyo_requests_per_message"], r["ct_requests_per_message"],
              r.get("first_cpu_ms", "")]
             for r in realtime]))
        seconds = sum(r["cpu_per_http_call_ms"] * r["http_calls_per_message"] * r["messages"]
                      for r in realtime if r.get("cpu_per_http_call_ms"))
        calls = sum(r["http_calls_per_message"] * r["messages"] for r in realtime
                    if r.get("cpu_per_http_call_ms"))
        if calls:
            parts.append(f"  realtime CPU per HTTP call (all rows): {seconds / calls:.3f} ms "
                         "(JSON body encoding and requests: preparing, sending, reading; "
                         "not the wait)")
        parts.append("  first CPU ms: the row's first delivery; in a row that is the first of its "
                     "message type it includes building the models it uses (built on first use, "
                     "not at import: paid once per instance)")
    cold = results.get("cold_start") or {}
    entries = [(k, v) for k, v in cold.items() if k in ("realtime", "bulk", "hello")]
    if entries:
        parts.append("\nCOLD START  import of the entry point in a fresh interpreter "
                     "(median ms; ratio: over a hello-world functions-framework function "
                     "measured interleaved in the same run)")
        parts.append(_table(
            ["entry point", "import ms", "ratio", "CPU ms", "ratio",
             "own ms (framework preloaded)", "no pyc cache ms", "ratio", "modules",
             "heavy modules loaded"],
            [[k if k == "hello" else v["entry_point"], v["import_ms"],
              v.get("import_ratio", 1.0 if k == "hello" else ""), v.get("import_cpu_ms", ""),
              v.get("import_cpu_ratio", 1.0 if k == "hello" else ""), v["own_import_ms"],
              v["no_bytecode_cache_ms"], v.get("no_bytecode_cache_ratio",
                                               1.0 if k == "hello" else ""),
              v["modules"], ", ".join(v["heavy_modules"])] for k, v in entries]))
        for name, v in entries:
            if name == "hello":
                continue
            parts.append(f"  {name} slowest imports: " + ", ".join(
                f"{i['module']} {i['cumulative_ms']:g}" for i in v["slowest_imports"][:6]))
        deps = cold.get("dependencies")
        if deps:
            parts.append(f"  runtime dependencies: {deps['packages']} packages, "
                         f"{deps['megabytes']} MB installed; largest: " + ", ".join(
                             f"{d['package']} {d['megabytes']}" for d in deps["largest"][:6]))
    targets: list[dict[str, Any]] = results.get("targets") or []
    if targets:
        parts.append("\nTARGETS")
        parts.append(_table(["target", "goal", "value", "unit", "result", "note"],
                            [[r["id"], r["target"], r["value"], r["unit"], r["result"],
                              r["note"]] for r in targets]))
    return "\n".join(parts) + "\n"
