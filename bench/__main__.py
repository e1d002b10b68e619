"""`python -m bench`: bulk throughput, the rate-limit floor, realtime handler cost and cold start.

  python -m bench [--n 10000] [--out bench/results.json] [--only bulk,realtime,coldstart]
                  [--rt-messages 300] [--rt-warmup 30] [--cold-runs 5] [--profile DIR]

Prints a table and writes the same figures (and every target's pass/miss) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import report

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("bulk", "realtime", "coldstart")
EXTRA_SECTIONS = ("scale",)  # only when asked for: `--only scale` (bench/scale.py)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000,
                        help="customers, orders and products per bulk kind (default 10,000)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json",
                        help="where to write the JSON (default bench/results.json)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="comma-separated sections to run: bulk, realtime, coldstart "
                             "(default), scale")
    parser.add_argument("--scale-records", type=int, default=50_000,
                        help="scale: customers and orders per job (default 50,000)")
    parser.add_argument("--scale-factor", type=float, default=1.0,
                        help="scale: Klaviyo's limits ×F and API latencies ÷F (default 1)")
    parser.add_argument("--scale-partitions", type=int, default=None,
                        help="scale: partitions of the partitioned design (default: the "
                             "settings' default)")
    parser.add_argument("--kinds", default="customers,orders,products",
                        help="bulk kinds to run (default all three)")
    parser.add_argument("--rt-messages", type=int, default=300,
                        help="measured realtime deliveries per message type (default 300)")
    parser.add_argument("--rt-warmup", type=int, default=30,
                        help="realtime deliveries per type sent first and not measured")
    parser.add_argument("--cold-runs", type=int, default=5,
                        help="fresh interpreters per entry point (median; default 5)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also profile each bulk kind (cProfile, tasks on the main thread) "
                             "into DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def calibration_seconds() -> float:
    """CPU seconds of a fixed pure-Python workload: the same on a quiet machine from run to
    run, larger when other processes compete for the core (then every CPU figure is too)."""
    start = time.process_time()
    table: dict[int, int] = {}
    for i in range(1_000_000):
        table[i & 1023] = table.get(i & 1023, 0) + i * 3
    return round(time.process_time() - start, 3)


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10,
                                check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10,
                               check=False).stdout
        commit += "+changes" if dirty.strip() else ""
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return {
        "python": f"Python {platform.python_version()}",
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "commit": commit or "?",
        "n": args.n,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS) - set(EXTRA_SECTIONS)
    if unknown:
        print(f"unknown section(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"[bench] {message}", file=sys.stderr, flush=True)

    results: dict[str, Any] = {"meta": _meta(args)}
    results["meta"]["calibration_cpu_seconds"] = [calibration_seconds()]
    if "bulk" in sections or "realtime" in sections:
        from bench.fakes import FakeServers

        progress("starting the commercetools and Klaviyo fakes (own process)")
        with FakeServers() as fakes:
            if "bulk" in sections:
                from bench import bulk, floor

                progress(f"loading {args.n:,} customers, orders and products into the CT fake")
                fakes.call("load_bulk", args.n)
                runs = bulk.run(args.n, fakes, kinds=kinds, profile_to=args.profile,
                                progress=progress)
                for run in runs:
                    run.pop("_sequence", None)
                results["bulk"] = runs
                results["floor"] = floor.floors(runs)
            if "realtime" in sections:
                from bench import realtime

                results["realtime"] = realtime.run(fakes, messages=args.rt_messages,
                                                   warmup=args.rt_warmup,
                                                   profile_to=args.profile, progress=progress)
    if "coldstart" in sections:
        from bench import coldstart

        results["cold_start"] = coldstart.run(runs=args.cold_runs, progress=progress)
    if "scale" in sections:
        from bench import scale

        results["scale"] = scale.run(args.scale_records, args.scale_factor,
                                     args.scale_partitions, progress=progress)
        results["scale_targets"] = scale.targets(results["scale"])
    results["meta"]["calibration_cpu_seconds"].append(calibration_seconds())
    results["targets"] = report.targets(results)

    if set(sections) - {"scale"}:
        print(report.render(results), end="")
    if "scale" in sections:
        print(scale.render(results["scale"]), end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    progress(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
