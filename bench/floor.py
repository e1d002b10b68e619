"""The rate-limit floor: the least time Klaviyo's published limits allow for a request mix.

Limits are Klaviyo's per-endpoint burst (per second) and steady (per minute) values from
reference/api-facts.md §2.2, with the L tier's steady value taken as 700/min (the design value;
the spec says 750/min since April 2026) and 150/min for the bulk job endpoints.

Model: each endpoint has its own budget; R requests to an endpoint need at least
max(R / steady·60, R / burst) seconds (a steady stream at the tighter of the two rates; bursting
into the first window saves at most one window). A kind's floor is the sum over its endpoints
(one request after another, as the exporters send), and customers + orders is the sum of both
kinds (one job after the other) — conservative on both counts.

The reference plugin (reference/anchor-behaviour.md §4.5–4.6) sends one POST /api/profiles per
customer and one POST /api/events per order event, reading commercetools in pages of 10 and
sleeping 2 s after every page. Its floor is the larger of its request floor and its sleeps (the
requests of a page fit inside the sleep that follows: 10 profiles or ~45 events per 2 s are far
below the endpoints' limits).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BULK_BATCH = {"profiles": 10_000, "events": 1_000, "catalog": 100}


@dataclass(frozen=True)
class Limit:
    burst_per_second: int
    steady_per_minute: int

    def seconds(self, requests: float) -> float:
        if requests <= 0:
            return 0.0
        return max(requests * 60.0 / self.steady_per_minute, requests / self.burst_per_second)


BULK_JOB = Limit(10, 150)  # profile-bulk-import-jobs, event-bulk-create-jobs (+ their GETs)
L_TIER = Limit(75, 700)  # profiles, profile-import, catalog writes and catalog bulk jobs
XL_TIER = Limit(350, 3500)  # events, catalog reads


def published_limit(endpoint: str) -> Limit:
    """Klaviyo's limit for `METHOD /api/...` (a path template)."""
    method, _, path = endpoint.partition(" ")
    head = path.split("/")[2] if path.count("/") >= 2 else ""
    if head in ("profile-bulk-import-jobs", "event-bulk-create-jobs"):
        return BULK_JOB
    if head.startswith("catalog-") and head.endswith("-jobs"):
        return L_TIER  # POST jobs and GET job status: 75/s, 700/min (rev 2026-07-15)
    if head in ("catalog-items", "catalog-variants", "catalog-categories"):
        return XL_TIER if method == "GET" else L_TIER
    if head == "events":
        return XL_TIER
    if head in ("profiles", "profile-import"):
        return L_TIER
    return Limit(10, 150)  # the M tier, Klaviyo's most common limit


def is_bulk_write(endpoint: str) -> bool:
    method, _, path = endpoint.partition(" ")
    return method == "POST" and path.endswith("-jobs") and (
        "bulk" in path) and "subscription" not in path


def floor_seconds(requests: Mapping[str, float]) -> float:
    """Sum over endpoints of each endpoint's least time."""
    return sum(published_limit(e).seconds(r) for e, r in requests.items())


def scaled(run: Mapping[str, Any], n: int) -> dict[str, float]:
    """The run's requests for n items instead of run["n"]: bulk writes as the minimum for n
    items' records times the run's own ratio to its minimum (batches do not scale linearly
    with a small run's partial last request); other requests in proportion."""
    factor = n / run["n"]
    requests: dict[str, float] = {}
    for endpoint, count in run["klaviyo_requests"].items():
        payload = run.get("bulk_payloads", {}).get(endpoint)
        if payload and payload[0]:
            records, batch = payload
            minimum_here = math.ceil(records / batch)
            requests[endpoint] = math.ceil(records * factor / batch) * count / minimum_here
        else:
            requests[endpoint] = count * factor
    return requests


# ---- the reference plugin ---------------------------------------------------------------------

REF_PAGE = 10
REF_SLEEP_SECONDS = 2.0
CREATE_PROFILE = "POST /api/profiles"
CREATE_EVENT = "POST /api/events"


def reference_floor(kind: str, n: int, events_per_order: float = 0.0) -> dict[str, Any]:
    pages = math.ceil(n / REF_PAGE)
    if kind == "customers":
        requests = {CREATE_PROFILE: float(n)}
    else:
        requests = {CREATE_EVENT: n * events_per_order}
    request_seconds = floor_seconds(requests)
    sleep_seconds = pages * REF_SLEEP_SECONDS
    return {
        "requests": {e: round(r) for e, r in requests.items()},
        "request_seconds": round(request_seconds, 1),
        "sleep_seconds": round(sleep_seconds, 1),
        "seconds": round(max(request_seconds, sleep_seconds), 1),
    }


def reference_events_per_order(event_metrics: Mapping[str, int], orders: int,
                               refunded_metric: str = "Refunded Order") -> float:
    """Events the reference's bulk import sends for the same orders: Placed Order, Ordered
    Product per line, Fulfilled/Cancelled by state — but no Refunded Order (§4.6)."""
    total = sum(c for m, c in event_metrics.items() if m != refunded_metric)
    return total / orders if orders else 0.0


def floors(bulk: Sequence[Mapping[str, Any]], n: int = 100_000) -> dict[str, Any]:
    """Our floor and the reference's for n customers + n orders, from measured request mixes."""
    by_kind = {r["kind"]: r for r in bulk}
    ours: dict[str, Any] = {}
    ref: dict[str, Any] = {}
    for kind in ("customers", "orders"):
        run = by_kind.get(kind)
        if run is None:
            continue
        requests = scaled(run, n)
        ours[kind] = {"requests": {e: round(r) for e, r in requests.items()},
                      "seconds": round(floor_seconds(requests), 1)}
        per_order = reference_events_per_order(run["event_metrics"], run["n"]) \
            if kind == "orders" else 0.0
        ref[kind] = reference_floor(kind, n, per_order)
        if kind == "orders":
            ref[kind]["events_per_order"] = round(per_order, 3)
            ours[kind]["events_per_order"] = round(
                sum(run["event_metrics"].values()) / run["n"], 3)
    ours_total = sum(k["seconds"] for k in ours.values())
    ref_total = sum(k["seconds"] for k in ref.values())
    return {
        "n": n,
        "ours": ours,
        "ours_seconds": round(ours_total, 1),
        "ours_concurrent_seconds": round(max((k["seconds"] for k in ours.values()), default=0), 1),
        "reference": ref,
        "reference_seconds": round(ref_total, 1),
        "ratio": round(ref_total / ours_total, 1) if ours_total else None,
    }
