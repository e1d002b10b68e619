"""Run a bulk import from a laptop, without any cloud: `python -m bulk ...`.

  python -m bulk sync customers [--ids ID ...] [--ids-file FILE]
  python -m bulk sync orders [--ids ID ...]
  python -m bulk sync categories|products [--delete-all [--yes]]
  python -m bulk status KIND [--job JOB_ID] [--json]
  python -m bulk stop KIND        ask a running sync (e.g. in another terminal) to stop
  python -m bulk release KIND     force-release the kind's lock (its job is marked failed)

Always the embedded runner (state in BULK_LOCAL_STATE_FILE, tasks on a worker thread), with the
same job runner and exporters as the Cloud Functions. Progress (a tqdm bar of records read
against the job's total, with rate and ETA) and log lines go to stderr, the summary to stdout
(with --json, only the JSON). Exit status: 0 completed, 1 failed or stopped, 2 bad
usage/configuration, 3 a sync of that kind is already running, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from shared.bulk.api import BadRequest, parse_sync_body, status_view
from shared.bulk.base import KINDS, Kind
from shared.bulk.runner import Conflict, EnqueueError, Runner, build_runner
from shared.bulk.tasks import LocalTaskQueue
from shared.errors import ConfigError
from shared.state.jobs import Job, JobStatus, progress, utcnow

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFLICT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bulk",
                                     description="Bulk import commercetools data into Klaviyo "
                                                 "(embedded local mode).")
    sub = parser.add_subparsers(dest="command", required=True)
    sync = sub.add_parser("sync", help="run a sync to the end, showing progress")
    sync.add_argument("kind", choices=KINDS)
    sync.add_argument("--ids", nargs="+", metavar="ID", help="customers/orders: only these ids")
    sync.add_argument("--ids-file", metavar="FILE", help="customers/orders: ids, one per line")
    sync.add_argument("--delete-all", action="store_true",
                      help="categories/products: first delete ALL of them in Klaviyo")
    sync.add_argument("--yes", action="store_true", help="confirm --delete-all without a prompt")
    sync.add_argument("--json", action="store_true", help="print the final job status as JSON")
    sync.add_argument("--no-progress", action="store_true", help="no progress output on stderr")
    status = sub.add_parser("status", help="the latest job of a kind (or one job)")
    status.add_argument("kind", choices=KINDS)
    status.add_argument("--job", metavar="JOB_ID")
    status.add_argument("--json", action="store_true")
    stop = sub.add_parser("stop", help="ask the running sync of a kind to stop")
    stop.add_argument("kind", choices=KINDS)
    release = sub.add_parser("release", help="force-release a kind's lock (marks its job failed)")
    release.add_argument("kind", choices=KINDS)
    return parser


# ---- rendering -------------------------------------------------------------------------------


def _counts(job: Job) -> str:
    c = job.counts
    text = f"read {c.read:,}  sent {c.sent:,}  skipped {c.skipped:,}  failed {c.failed:,}"
    return (f"deleted {c.deleted:,}  " if job.deleteAll else "") + text


def _klaviyo(job: Job) -> str | None:
    """What Klaviyo's side said (shared/bulk/verification.py), if there is anything to say."""
    if not (job.klaviyoChecked or job.klaviyoPending or job.klaviyoFailed):
        return None
    waiting = " (waiting for Klaviyo)" if job.live and job.phase == "verifying" else ""
    return (f"Klaviyo jobs checked {job.klaviyoChecked:,}  pending {job.klaviyoPending:,}"
            f"{waiting}  records refused in them {job.klaviyoFailed:,} (counted in failed)")


class Progress:
    """A tqdm bar of records read against the job's total (counted at its start with
    commercetools' withTotal): percentage, rate and ETA, redrawn on each saved batch."""

    def __init__(self, stream: IO[str], enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and stream.isatty()
        self._bar: Any = None
        self._last: tuple[int, JobStatus, int | None] | None = None

    def _open(self, job: Job) -> Any:
        from tqdm import tqdm

        return tqdm(total=job.total, desc=job.kind, unit=" records",
                    file=self.stream, dynamic_ncols=self.tty, ascii=not self.tty,
                    mininterval=0.2 if self.tty else 0, leave=True,
                    bar_format=None if job.total is not None else
                    "{desc}: {n_fmt} records [{elapsed}, {rate_fmt}]{postfix}")

    def update(self, job: Job) -> None:
        if not self.enabled:
            return
        state = (job.seq, job.status, job.total)  # a verifying task saves a new seq too
        if state == self._last:
            return
        self._last = state
        if self._bar is None or (self._bar.total is None and job.total is not None):
            if self._bar is not None:
                self._bar.close()
            self._bar = self._open(job)
        c = job.counts
        status = job.status.value + (" (verifying)" if job.phase == "verifying" else "")
        postfix = {"status": status, "sent": c.sent, "skipped": c.skipped, "failed": c.failed}
        if job.deleteAll:
            postfix = {"deleted": c.deleted, **postfix}
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(max(0, c.read - self._bar.n))
        if not self.tty:
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _summary(job: Job, out: IO[str], *, as_json: bool, elapsed: float | None = None) -> None:
    if as_json:
        out.write(json.dumps(status_view(job, utcnow()), indent=2) + "\n")
        return
    took = f" in {elapsed:.1f}s" if elapsed is not None else ""
    out.write(f"{job.kind} sync {job.status.value}{took} (job {job.id})\n")
    p = progress(job, utcnow())
    total = f" of {p['total']:,}" if p["total"] is not None else ""
    percent = f" ({p['percent']:g} %)" if p["percent"] is not None else ""
    rate = f", {p['ratePerSecond']:,.0f}/s" if p["ratePerSecond"] else ""
    eta = f", ETA {p['etaSeconds']:,.0f} s" if p["etaSeconds"] is not None else ""
    out.write(f"  read {p['read']:,}{total}{percent}{rate}{eta}\n")
    out.write(f"  {_counts(job)}  batches {job.seq}  cursor {job.cursor or '-'}\n")
    klaviyo = _klaviyo(job)
    if klaviyo:
        out.write(f"  {klaviyo}\n")
    if job.reason or job.errorCode:
        out.write(f"  reason: {job.reason or '-'}  error code: {job.errorCode or '-'}\n")
    if job.errors:
        out.write(f"  errors (first {len(job.errors)} of {job.errorCount}):\n")
        for e in job.errors[:20]:
            job_ref = f"  Klaviyo job {e.klaviyoJobId}" if e.klaviyoJobId else ""
            out.write(f"    {e.ctId}  status {e.status or '-'}  code {e.code or '-'}"
                      f"  {e.pointer or ''}{job_ref}".rstrip() + "\n")


# ---- commands --------------------------------------------------------------------------------


def _read_ids(args: argparse.Namespace) -> list[str] | None:
    ids: list[str] = list(args.ids or [])
    if args.ids_file:
        with open(args.ids_file, encoding="utf-8") as f:
            ids += [line.strip() for line in f if line.strip()]
    return ids if (args.ids or args.ids_file) else None


def _confirm_delete(kind: Kind, args: argparse.Namespace, err: IO[str]) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        err.write("--delete-all deletes every Klaviyo catalog " + kind + "; add --yes to "
                  "confirm when not running interactively\n")
        return False
    err.write(f"This first deletes ALL {kind} in the Klaviyo catalog. Type '{kind}' to confirm: ")
    err.flush()
    return sys.stdin.readline().strip() == kind


def _sync(runner: Runner, args: argparse.Namespace, settings: Any, out: IO[str],
          err: IO[str]) -> int:
    kind: Kind = args.kind
    ids = _read_ids(args)
    if ids is not None and kind not in ("customers", "orders"):
        err.write(f"--ids applies to customers and orders, not {kind}\n")
        return EXIT_USAGE
    if args.delete_all and kind not in ("categories", "products"):
        err.write(f"--delete-all applies to categories and products, not {kind}\n")
        return EXIT_USAGE
    if args.delete_all and not _confirm_delete(kind, args, err):
        err.write("not confirmed; nothing done\n")
        return EXIT_USAGE
    body: dict[str, Any] = {}
    if ids is not None:
        body["ids"] = ids
    if args.delete_all:
        body.update(deleteAll=True, confirmDeletion=kind)
    try:  # the same rules as the HTTP API
        options = parse_sync_body(kind, json.dumps(body).encode(), max_ids=settings.bulk_max_ids)
    except BadRequest as exc:
        err.write(f"{exc}\n")
        return EXIT_USAGE

    try:
        job = runner.start(kind, ids=options.ids, delete_all=options.delete_all)
    except Conflict as exc:
        err.write(f"a {kind} sync is already running (job {exc.job_id}); wait for it, "
                  f"`python -m bulk stop {kind}`, or `python -m bulk release {kind}` if it is "
                  "dead\n")
        return EXIT_CONFLICT
    except EnqueueError as exc:
        err.write(f"could not queue job {exc.job.id}\n")
        return EXIT_FAILED

    progress = Progress(err, enabled=not args.no_progress)
    queue = runner.queue
    started = time.monotonic()
    try:
        while True:
            current = runner.job(job.id) or job
            progress.update(current)
            if not current.live:
                break
            if isinstance(queue, LocalTaskQueue) and queue.wait_idle(timeout=0.2):
                current = runner.job(job.id) or current
                if current.live:  # nothing left to run it: the task was dropped
                    current = runner.abandon(job.id, reason="local task queue gave up") or current
                progress.update(current)
                break
    except KeyboardInterrupt:
        progress.close()
        ended = runner.abandon(job.id, reason="interrupted") or runner.job(job.id) or job
        if isinstance(queue, LocalTaskQueue):
            queue.close()
        _summary(ended, out, as_json=args.json, elapsed=time.monotonic() - started)
        return EXIT_INTERRUPTED
    progress.close()
    _summary(current, out, as_json=args.json, elapsed=time.monotonic() - started)
    return EXIT_OK if current.status == JobStatus.COMPLETED else EXIT_FAILED


def main(argv: Sequence[str] | None = None, *, out: IO[str] | None = None,
         err: IO[str] | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    from shared import log
    from shared.config import load_settings

    try:
        settings = load_settings()
        # Logs go to stderr: stdout carries only the command's output (--json: only JSON).
        log.configure("WARNING" if settings.log_level == "INFO" else settings.log_level,
                      stream=err)
        runner = build_runner(settings, local=True)
    except ConfigError as exc:
        err.write(f"{exc}\n")
        return EXIT_USAGE

    if args.command == "sync":
        return _sync(runner, args, settings, out, err)
    if args.command == "status":
        job = runner.job(args.job) if args.job else runner.latest(args.kind)
        if job is None:
            err.write(f"no {args.kind} sync has run (state: {runner.store!r})\n")
            return EXIT_FAILED
        _summary(job, out, as_json=args.json)
        return EXIT_OK
    if args.command == "stop":
        job = runner.stop(args.kind)
        if job is None or not job.live:
            ended = f" (job {job.id} has ended: {job.status.value})" if job else ""
            err.write(f"no {args.kind} sync is running{ended}\n")
            return EXIT_FAILED
        out.write(f"job {job.id} stops after its current batch\n")
        return EXIT_OK
    job = runner.force_release(args.kind)
    out.write(f"released the {args.kind} lock" + (f" (job {job.id} is {job.status.value})"
                                                  if job else " (it was not held)") + "\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
