"""Show and force-release the bulk sync locks (one per kind) of a deployed connector.

    python -m deploy.locks show [KIND] [--project GCP_PROJECT] [--prefix PREFIX]
    python -m deploy.locks release KIND [--yes] [--project GCP_PROJECT] [--prefix PREFIX]

Each kind (customers, orders, categories, products) has one lock document pointing at its latest
job, with a lease that every saved batch renews; a lapsed lease is taken over by the next start
anyway. `show` prints, per kind, the lock (held or not, lease expiry, last holder) and its job
(status, counts, cursor, last update). `release` is for an operator who knows a job is dead but
does not want to wait for its lease: after a confirmation (`--yes` skips it) the lock is released
and a live job is marked failed, "released by operator". A page task of that job still in flight
then finds its job ended and does nothing.

The state is the bulk functions' Firestore collections (`<BULK_COLLECTION_PREFIX>locks`, `...jobs`)
in GOOGLE_CLOUD_PROJECT (FIRESTORE_EMULATOR_HOST honoured), read with the caller's Application
Default Credentials. `--local-state FILE` reads the embedded store of a local run instead
(BULK_LOCAL_STATE_FILE). Only the project and the prefix are needed: no commercetools or Klaviyo
credentials.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime

from deploy.operator import one_line_errors, operator_identity
from shared.bulk.base import KINDS
from shared.config import Settings
from shared.log import get_logger
from shared.state import JobStore
from shared.state.jobs import Job, Lock, utcnow

RELEASE_REASON = "released by operator"
log = get_logger("deploy.locks")


def _default(name: str) -> str:
    return str(Settings.model_fields[name].default)


def open_store(*, project: str | None, prefix: str, local_state: str | None,
               database: str = "(default)") -> JobStore:
    if local_state:
        from shared.state import MemoryStore

        return MemoryStore(local_state)
    if not project:
        raise SystemExit("error: --project or GOOGLE_CLOUD_PROJECT is required "
                         "(or --local-state FILE for a local run)")
    from shared.state import FirestoreStore

    return FirestoreStore.connect(project, prefix=prefix, database=database)


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = int((value - now).total_seconds())
    relative = f"in {seconds}s" if seconds >= 0 else f"{-seconds}s ago"
    return f"{value.isoformat(timespec='seconds')} ({relative})"


def describe(kind: str, lock: Lock | None, job: Job | None, now: datetime) -> list[str]:
    lines = [f"{kind}:"]
    if lock is None:
        return lines + ["  lock:   none (no sync has run)"]
    if not lock.held:
        state = "free"
    elif lock.active(now):
        state = "held"
    else:
        state = "held, lease lapsed (the next start takes it over)"
    lines.append(f"  lock:   {state}; job {lock.jobId}; lease expires {_when(lock.expiresAt, now)}"
                 f"; holder {lock.holder or '-'}")
    if job is None:
        lines.append("  job:    (missing)")
        return lines
    counts = ", ".join(f"{k} {v}" for k, v in job.counts.model_dump().items())
    lines.append(f"  job:    {job.status.value}, phase {job.phase}, {job.seq} batch(es), {counts}")
    lines.append(f"          cursor {job.cursor or '-'}; updated {_when(job.updatedAt, now)}"
                 + (f"; reason: {job.reason}" if job.reason else ""))
    return lines


def show(store: JobStore, kinds: Sequence[str], now: datetime) -> list[str]:
    lines: list[str] = []
    for kind in kinds:
        lock = store.get_lock(kind)  # type: ignore[arg-type]
        job = store.get_job(lock.jobId) if lock is not None else None
        lines += describe(kind, lock, job, now)
    return lines


@one_line_errors
def main(argv: Sequence[str] | None = None, *, store: JobStore | None = None,
         ask: Callable[[str], str] = input, clock: Callable[[], datetime] = utcnow) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.locks",
                                     description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT"),
                        help="Google Cloud project (default GOOGLE_CLOUD_PROJECT)")
    common.add_argument("--prefix",
                        default=os.environ.get("BULK_COLLECTION_PREFIX",
                                               _default("bulk_collection_prefix")),
                        help="Firestore collection prefix (default BULK_COLLECTION_PREFIX or "
                             f"{_default('bulk_collection_prefix')!r})")
    common.add_argument("--database",
                        default=os.environ.get("BULK_FIRESTORE_DATABASE", "(default)"),
                        help="Firestore database (deploy.sh: the --prefix, e.g. ct-klaviyo; "
                             "default BULK_FIRESTORE_DATABASE or (default))")
    common.add_argument("--local-state", metavar="FILE",
                        help="the embedded store of a local run instead of Firestore")
    sub = parser.add_subparsers(dest="command", required=True)
    show_parser = sub.add_parser("show", parents=[common], help="locks and their jobs")
    show_parser.add_argument("kind", nargs="?", choices=KINDS)
    release_parser = sub.add_parser("release", parents=[common],
                                    help="force-release a kind's lock (its job is marked failed)")
    release_parser.add_argument("kind", choices=KINDS)
    release_parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    args = parser.parse_args(argv)

    store = store or open_store(project=args.project, prefix=args.prefix,
                                local_state=args.local_state, database=args.database)
    now = clock()
    if args.command == "show":
        print("\n".join(show(store, [args.kind] if args.kind else KINDS, now)))
        return 0

    kind = args.kind
    lock = store.get_lock(kind)
    if lock is None or not lock.held:
        print(f"{kind}: the lock is not held; nothing to release")
        return 1
    print("\n".join(show(store, [kind], now)))
    if not args.yes:
        answer = ask(f"Release the {kind} lock and mark job {lock.jobId} failed? "
                     f"Type {kind!r} to confirm: ")
        if answer.strip() != kind:
            print("not confirmed; nothing changed")
            return 1
    client = getattr(store, "client", None)
    by = operator_identity(getattr(client, "_credentials", None))
    job = store.force_release(kind, now=clock(), reason=RELEASE_REASON,
                              by=by)
    log.warning("bulk audit", action="release", caller=by, kind=kind,
                jobId=job.id if job else lock.jobId, outcome="released" if job else "not_held")
    if job is None:
        print(f"{kind}: the lock was released meanwhile; nothing to do")
        return 1
    print(f"{kind}: lock released; job {job.id} is {job.status.value}"
          + (f" ({job.reason})" if job.reason else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
