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
    parser.add_argument("--partitions", type=int, default=1,
                        help="bulk: partitions of each job (default 1: one chain)")
    parser.add_argument("--no-sigkill", action="store_true",
                        help="bulk: the worker dies only on its own (before save / before "
                             "queueing the next task), never SIGKILLed by the driver")
    parser.add_argument("--workdir", default=None,
                        help="keep the functions' logs and delivery records here")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--auth-outage", type=float, nargs=2, default=(0.0, 0.0),
                        metavar=("AT", "SECONDS"),
                        help="realtime: Klaviyo refuses the key (401) from AT s for SECONDS s; "
                             "what is dead-lettered meanwhile is replayed with "
                             "deploy.deadletters once the key is back")
    parser.add_argument("--peak", type=float, nargs=2, default=(0.0, 0.0),
                        metavar=("RATE", "SECONDS"),
                        help="realtime: publish RATE messages/s for SECONDS s (instead of "
                             "--messages at once) against a Klaviyo account with scaled limits")
    parser.add_argument("--limit-scale", type=float, default=None,
                        help="realtime: Klaviyo's per-account limits x this, enforced by the "
                             "fake across all instances and given to each instance's limiter "
                             "(default 0.1 with --peak, else none)")
    parser.add_argument("--instances", type=int, default=None,
                        help="realtime: function processes, each with its own limiter "
                             "(default 3 with --peak, else 1)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="realtime: requests at once per instance (deploy: 4; pusher only)")
    parser.add_argument("--transport", choices=("push", "pusher"), default=None,
                        help="realtime: the emulator's push subscriptions, or soak/pusher.py "
                             "(Pub/Sub's retry policy over pull; default with --peak or "
                             "--auth-outage)")
    parser.add_argument("--max-delivery-attempts", type=int, default=None,
                        help="realtime, pusher: deliveries before dead-lettering (deploy: 100; "
                             "default 5 with --auth-outage, so the replay path is exercised)")
    parser.add_argument("--backoff", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="realtime, pusher: the retry policy's backoff in seconds "
                             "(deploy: 10 600)")
    args = parser.parse_args(argv)

    if args.kind == "realtime":
        from soak.realtime import RealtimeConfig, run_realtime

        peak = args.peak[0] > 0
        outage = args.auth_outage[1] > 0
        config = RealtimeConfig(
            messages=args.messages or 2000, seed=args.seed, shards=args.shards,
            drain_timeout=args.timeout, workdir=args.workdir,
            auth_outage_at=args.auth_outage[0], auth_outage_seconds=args.auth_outage[1],
            peak_rate=args.peak[0], peak_seconds=args.peak[1],
            limit_scale=args.limit_scale if args.limit_scale is not None else
            (0.1 if peak else 0.0),
            instances=args.instances or (3 if peak else 1), concurrency=args.concurrency,
            transport=args.transport)
        if args.max_delivery_attempts is not None:
            config.max_delivery_attempts = args.max_delivery_attempts
        elif outage and not peak:
            config.max_delivery_attempts = 5
        if args.backoff is not None:
            config.backoff = (args.backoff[0], args.backoff[1])
        report = run_realtime(config)
    else:
        from soak.bulk import BulkConfig, run_bulk

        total = args.messages or 1200
        report = run_bulk(BulkConfig(customers=total * 3 // 5, orders=total - total * 3 // 5,
                                     seed=args.seed, timeout=args.timeout,
                                     partitions=args.partitions,
                                     max_kills=0 if args.no_sigkill else BulkConfig.max_kills,
                                     workdir=args.workdir))
    print(report.text())
    if args.json:
        print(json.dumps(report.figures, indent=2, default=str))
    print("OK" if report.ok else "FAILED")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
