"""`python -m bench` works end to end on a tiny data set (no timing assertions: CI machines vary;
the figures themselves are for `python -m bench` runs, see the README)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.report import TARGET_IDS

ROOT = Path(__file__).resolve().parents[1]


def test_bench_runs_and_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--n", "50", "--rt-messages", "5", "--rt-warmup", "2",
         "--cold-runs", "1", "--out", str(out), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "TARGETS" in done.stdout

    results = json.loads(out.read_text())
    assert {r["kind"]: r["status"] for r in results["bulk"]} == {
        "customers": "completed", "orders": "completed", "products": "completed"}
    for run in results["bulk"]:
        assert run["counts"]["sent"] == 50 and run["klaviyo_failed_requests"] == 0
        assert run["klaviyo_requests"] and run["cpu_seconds_per_1000"] > 0
    stored = {r["kind"]: r["stored_in_klaviyo"] for r in results["bulk"]}
    assert stored["customers"]["profiles"] == 50
    assert stored["products"]["items"] == 50 and stored["products"]["variants"] == 250
    assert results["floor"]["ours_seconds"] > 0 and results["floor"]["reference_seconds"] > 0
    assert [r["message"].split(" ")[0] for r in results["realtime"]] == [
        "CustomerCreated", "OrderCreated", "OrderStateChanged", "PaymentTransactionStateChanged",
        "Category", "ProductPublished", "ProductPublished", "ProductPublished"]
    for run in results["realtime"]:
        # The HTTP clock sees every call the fakes see (the clock counts measured messages only).
        assert run["cpu_per_http_call_ms"] > 0
        assert abs(run["http_calls_per_message"] - run["klaviyo_requests_per_message"]
                   - run["ct_requests_per_message"]) <= 0.5
    for run in results["bulk"]:
        assert run["http_calls"] >= len(run["klaviyo_requests"]) and run["cpu_per_http_call_ms"] > 0
    # commercetools reads per delivery: the one re-read of the resource, plus its products; a
    # category whose names were written is read once more, to confirm it did not move on.
    ct_reads = {r["message"].split(" ")[0]: r["ct_requests_per_message"]
                for r in results["realtime"]}
    assert ct_reads["OrderCreated"] <= 2.2 and ct_reads["OrderStateChanged"] <= 2.2
    assert ct_reads["PaymentTransactionStateChanged"] <= 2.2 and ct_reads["Category"] <= 2.2
    assert results["cold_start"]["realtime"]["import_ms"] > 0
    assert results["cold_start"]["hello"]["import_ms"] > 0
    assert results["cold_start"]["realtime"]["import_ratio"] > 1
    assert results["cold_start"]["dependencies"]["packages"] > 0

    rows = {r["id"]: r for r in results["targets"]}
    assert set(TARGET_IDS) <= set(rows), set(TARGET_IDS) - set(rows)
    assert all(r["result"] in ("pass", "miss") for r in rows.values())
