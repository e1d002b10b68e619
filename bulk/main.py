"""Bulk function entry points: the /sync HTTP API and the Pub/Sub page-task worker.

Deploy/serve with `--target sync_api` (HTTP) and `--target run_page_task` (CloudEvent from the
BULK_TASKS_TOPIC subscription). Settings, clients and the job runner are built once per
instance, at import; which backend (Firestore + Pub/Sub, or embedded) is decided by
`shared.bulk.runner.build_runner`.
"""

from __future__ import annotations

import flask
import functions_framework
from cloudevents.http.event import CloudEvent

from shared import log
from shared.bulk.api import BulkApi, Response
from shared.bulk.runner import build_runner
from shared.bulk.tasks import PageTask
from shared.config import get_settings
from shared.errors import MessageError
from shared.pubsub import decode_pubsub_event

settings = get_settings()
log.configure(settings.log_level)
logger = log.get_logger("bulk")
runner = build_runner(settings)
api = BulkApi.from_settings(runner, settings)


def _read_body(request: flask.Request) -> bytes | None:
    """The body, or None when it is larger than the limit (read no further than that)."""
    limit = api.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return None
    body = request.stream.read(limit + 1)
    return None if len(body) > limit else body


@functions_framework.http
def sync_api(request: flask.Request) -> flask.Response:
    if request.path == "/" and request.method in ("GET", "HEAD"):
        from shared.bulk.console import render  # the operator console (no API call of its own)

        return flask.Response(render(), status=200, mimetype="text/html",
                              headers={"Cache-Control": "no-store"})
    body = _read_body(request)
    response: Response = api.too_large() if body is None else api.handle(
        request.method, request.path, body, request.headers
    )
    return flask.Response(response.json(), status=response.status, headers=response.headers,
                          mimetype="application/json")


@functions_framework.cloud_event
def run_page_task(cloud_event: CloudEvent) -> None:
    try:
        task = PageTask.decode(decode_pubsub_event(cloud_event.get_data()).data)
    except MessageError as exc:
        logger.error("undecodable bulk task acknowledged", error=str(exc),
                     eventId=cloud_event.get("id"))
        return
    runner.run_task(task)  # raises only when the task should be delivered again
