"""`python -m soak realtime|bulk [--messages N] [--seed S]`: a fault-injection soak run.

Starts what it needs (the Pub/Sub and, for bulk, Firestore emulators; the commercetools and
Klaviyo fakes; the functions under functions-framework), prints the figures and exits 0 when
Klaviyo ends up exactly as commercetools' data implies, 1 otherwise. Everything listens on
127.0.0.1 only; every wait is bounded (--timeout).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("realtime", "bulk"))
    parser.add_argument("--messages", type=int, default=None,
                        help="realtime: deliveries in all (default 2000); bulk: customers + "
                             "orders (default 1200)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds to wait for the queue to drain / the jobs to end")
    parser.add_argument("--shards", type=int, default=4, help="realtime: push subscriptions")
    parser.add_argument("--workdir", default=None,
                        help="keep the functions' logs and delivery records here")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--auth-outage", type=float, nargs=2, default=(0.0, 0.0),
                        metavar=("AT", "SECONDS"),
                        help="realtime: Klaviyo refuses the key (401) from AT s for SECONDS s")
    args = parser.parse_args(argv)

    if args.kind == "realtime":
        from soak.realtime import RealtimeConfig, run_realtime

        report = run_realtime(RealtimeConfig(
            messages=args.messages or 2000, seed=args.seed, shards=args.shards,
            drain_timeout=args.timeout, workdir=args.workdir,
            auth_outage_at=args.auth_outage[0], auth_outage_seconds=args.auth_outage[1]))
    else:
        from soak.bulk import BulkConfig, run_bulk

        total = args.messages or 1200
        report = run_bulk(BulkConfig(customers=total * 3 // 5, orders=total - total * 3 // 5,
                                     seed=args.seed, timeout=args.timeout,
                                     workdir=args.workdir))
    print(report.text())
    if args.json:
        print(json.dumps(report.figures, indent=2, default=str))
    print("OK" if report.ok else "FAILED")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
