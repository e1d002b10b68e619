"""One function served by functions-framework in this process, every answer recorded.

    python -m soak.serve --target handle_ct_message --source realtime/main.py --port P \
        --record deliveries.jsonl [--die-before-save 0.2 --die-before-publish 0.1 --seed S]

The app is exactly what the `functions-framework` command serves (`create_app` + its gunicorn
server, one worker, 4 threads per core); a WSGI wrapper appends one JSON line per request to
`--record`: the Pub/Sub message id and the soak's `soak` attribute (push deliveries), the HTTP
status and the time taken. Settings come from the environment, as in Cloud Functions.

For the bulk page worker, `--die-before-save P` makes the worker process exit (os._exit, no
clean-up: an instance killed) with probability P right before it saves a batch the exporter has
already sent to Klaviyo, and `--die-before-publish P` right before it queues the next task (after
the save). Gunicorn starts a new worker, Pub/Sub redelivers the task.

For the realtime peak phase, `--klaviyo-limit-scale F` scales this process's Klaviyo limiter to
the scaled-down account the Klaviyo fake enforces (soak/limits.py).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any


class Recorder:
    def __init__(self, app: Callable[..., Iterable[bytes]], path: str) -> None:
        self.app = app
        self.path = path
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.time()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        message_id = soak_id = None
        try:
            message = json.loads(body).get("message") or {}
            message_id = message.get("messageId") or message.get("message_id")
            soak_id = (message.get("attributes") or {}).get("soak")
        except (ValueError, AttributeError):
            pass
        status: list[int] = []

        def recording_start_response(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(int(status_line.split()[0]))
            return start_response(status_line, headers, exc_info)

        try:
            result = list(self.app(environ, recording_start_response))
        except BaseException:
            status.append(599)
            raise
        finally:
            line = json.dumps({"id": message_id, "soak": soak_id, "path": environ.get("PATH_INFO"),
                               "status": status[0] if status else 599, "start": started,
                               "end": time.time(), "pid": os.getpid()})
            with self.lock, open(self.path, "a", encoding="utf-8") as out:
                out.write(line + "\n")
        return result


def _install_deaths(before_save: float, before_publish: float, seed: int,
                    log_path: str | None) -> None:
    """Patch the job store and task queue of this process to die at those points."""
    from shared.bulk.tasks import PubsubTaskQueue
    from shared.state.firestore_store import FirestoreStore

    rnds: dict[int, random.Random] = {}  # per worker process: gunicorn forks after the patch

    def dying(original: Callable[..., Any], probability: float, point: str
              ) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            pid = os.getpid()
            rnd = rnds.setdefault(pid, random.Random(f"{seed}|{pid}|{time.time_ns()}"))
            if probability and rnd.random() < probability:
                if log_path:
                    with open(log_path, "a", encoding="utf-8") as out:
                        out.write(json.dumps({"pid": pid, "point": point, "t": time.time()})
                                  + "\n")
                os._exit(137)  # the instance dies: no exception handling, no clean-up
            return original(*args, **kwargs)

        return wrapper

    FirestoreStore.save_batch = dying(  # type: ignore[method-assign]
        FirestoreStore.save_batch, before_save, "before-save")
    PubsubTaskQueue.publish = dying(  # type: ignore[method-assign]
        PubsubTaskQueue.publish, before_publish, "before-publish")


def _scale_batches(customers_batch: int, order_events: int) -> None:
    """Smaller batches than production (10,000 profiles / 10 requests of 1,000 events), so a
    CI-sized job has many batches, each a point where the worker can die."""
    from shared.bulk import exporters

    original = exporters.build_exporter

    def build(kind: Any, settings: Any, ct: Any, klaviyo: Any, *, since: Any = None) -> Any:
        exporter = original(kind, settings, ct, klaviyo, since=since)
        if kind == "customers" and customers_batch:
            exporter.batch_size = customers_batch  # type: ignore[attr-defined]  # CustomersExporter
        if kind == "orders" and order_events:
            exporter.target_events = order_events  # type: ignore[attr-defined]  # OrdersExporter
        return exporter

    exporters.build_exporter = build


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m soak.serve")
    parser.add_argument("--target", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--die-before-save", type=float, default=0.0)
    parser.add_argument("--die-before-publish", type=float, default=0.0)
    parser.add_argument("--customers-batch", type=int, default=0)
    parser.add_argument("--order-events-batch", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deaths-log", default=None)
    # The realtime peak phase: this instance's limiter gets Klaviyo's limits × the scale, as the
    # Klaviyo fake's account limits do (soak/limits.py).
    parser.add_argument("--klaviyo-limit-scale", type=float, default=0.0)
    args = parser.parse_args(argv)

    from functions_framework import create_app
    from functions_framework._http import create_server

    if args.klaviyo_limit_scale:
        from soak.limits import scale_process_limiter

        scale_process_limiter(args.klaviyo_limit_scale)
    if args.customers_batch or args.order_events_batch:
        _scale_batches(args.customers_batch, args.order_events_batch)
    if args.die_before_save or args.die_before_publish:
        _install_deaths(args.die_before_save, args.die_before_publish, args.seed,
                        args.deaths_log)
    app = create_app(args.target, args.source)
    app.wsgi_app = Recorder(app.wsgi_app, args.record)
    create_server(app, False).run("127.0.0.1", args.port)


if __name__ == "__main__":
    main()
