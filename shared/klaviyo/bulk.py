"""Klaviyo bulk jobs: profile import, event create, catalog create/update/delete.

Body shapes follow Klaviyo's OpenAPI (klaviyo/openapi, revision 2026-07-15):
`ProfileImportJobCreateQuery`, `EventsBulkCreateJob`, `Catalog{Item,Variant,Category}
{Create,Update,Delete}JobCreateQuery`. Size limits are checked before sending, because Klaviyo
would reject the whole request anyway and the caller should split, not retry.
"""

from __future__ import annotations

import contextvars
import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from shared.deadline import Deadline
from shared.errors import DeadlineExceeded
from shared.klaviyo.catalog import KINDS, CatalogKind
from shared.klaviyo.transport import KlaviyoTransport

MAX_BULK_PROFILES = 10_000
MAX_BULK_EVENTS = 1_000
MAX_CATALOG_BULK = 100

CatalogOp = Literal["create", "update", "delete"]
PENDING_STATUSES = frozenset({"queued", "processing"})


@dataclass(frozen=True)
class StartedJob:
    """A profile bulk import job Klaviyo accepted: its id and how many profiles went into it."""

    job_id: str
    records: int


_started: contextvars.ContextVar[list[StartedJob] | None] = contextvars.ContextVar(
    "klaviyo_started_jobs", default=None)


@contextmanager
def recording_jobs() -> Iterator[list[StartedJob]]:
    """Profile bulk import jobs started in this context (and in threads run with a copy of it)
    are listed in the yielded list, so whoever runs a batch can check them on Klaviyo's side
    later (shared/bulk/verification.py) without every caller passing job ids up."""
    started: list[StartedJob] = []
    token = _started.set(started)
    try:
        yield started
    finally:
        _started.reset(token)


def _catalog_job_path(kind: CatalogKind, op: CatalogOp) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown catalog kind {kind!r}")
    if op not in ("create", "update", "delete"):
        raise ValueError(f"unknown catalog operation {op!r}")
    return f"/api/catalog-{kind}-bulk-{op}-jobs"


class BulkMixin(KlaviyoTransport):
    # -- profiles ----------------------------------------------------------------------------------

    def create_profile_bulk_import_job(
        self, profiles: list[dict[str, Any]], *, list_id: str | None = None,
        deadline: Deadline = Deadline.never(),
    ) -> str:
        """Start an import of ≤10,000 profiles (attribute dicts); returns the job id.

        Klaviyo validates the whole request: one malformed profile makes it a 400 whose error
        pointer names the profile's index (`/data/attributes/profiles/data/<i>/...`).
        """
        if len(profiles) > MAX_BULK_PROFILES:
            raise ValueError(f"{len(profiles)} profiles exceed the bulk limit {MAX_BULK_PROFILES}")
        data: dict[str, Any] = {
            "type": "profile-bulk-import-job",
            "attributes": {
                "profiles": {"data": [{"type": "profile", "attributes": p} for p in profiles]}
            },
        }
        if list_id:
            data["relationships"] = {"lists": {"data": [{"type": "list", "id": list_id}]}}
        body = self.request("POST", "/api/profile-bulk-import-jobs", json={"data": data},
                            deadline=deadline)
        job_id = str((body or {})["data"]["id"])
        recorder = _started.get()
        if recorder is not None:
            recorder.append(StartedJob(job_id, len(profiles)))
        return job_id

    def get_profile_bulk_import_job(
        self, job_id: str, *, deadline: Deadline = Deadline.never()
    ) -> dict[str, Any]:
        """The job's attributes: status, total_count, completed_count, failed_count, ..."""
        body = self.request("GET", f"/api/profile-bulk-import-jobs/{job_id}", deadline=deadline)
        return dict((body or {})["data"]["attributes"])

    def get_profile_bulk_import_errors(
        self, job_id: str, *, deadline: Deadline = Deadline.never()
    ) -> list[dict[str, Any]]:
        """Import errors of a job (attributes: code, title, detail, source, original_payload)."""
        path = f"/api/profile-bulk-import-jobs/{job_id}/import-errors"
        return [
            {"id": e.get("id"), **(e.get("attributes") or {})}
            for e in self.paginate(path, deadline=deadline)
        ]

    def iter_profile_bulk_import_errors(
        self, job_id: str, *, page_size: int = 100, deadline: Deadline = Deadline.never()
    ) -> Iterator[dict[str, Any]]:
        """A job's import errors, one page (≤100, Klaviyo's maximum) per request, fetched as the
        caller iterates: stop early and no further page is read. Each error's attributes
        (`code`, `title`, `detail`, `source`, `original_payload`) plus its `id`;
        `original_payload` is the profile as sent, personal data included."""
        path = f"/api/profile-bulk-import-jobs/{job_id}/import-errors"
        params = {"page[size]": str(max(1, min(100, page_size)))}
        for e in self.paginate(path, params=params, deadline=deadline):
            yield {"id": e.get("id"), **(e.get("attributes") or {})}

    # -- events ------------------------------------------------------------------------------------

    def create_event_bulk_job(
        self, entries: list[dict[str, Any]], *, deadline: Deadline = Deadline.never()
    ) -> None:
        """Create ≤1,000 events grouped by profile; Klaviyo answers 202 with no job to poll.

        Each entry is `{"profile": {profile attributes}, "events": [event attributes without
        profile], "backfill": bool (optional)}`. A unique_id repeated for the same profile and
        metric fails the whole request, so callers de-duplicate before sending.
        """
        total = sum(len(e.get("events") or ()) for e in entries)
        if total > MAX_BULK_EVENTS:
            raise ValueError(f"{total} events exceed the bulk limit {MAX_BULK_EVENTS}")
        data = []
        for entry in entries:
            attributes: dict[str, Any] = {
                "profile": {"data": {"type": "profile", "attributes": entry["profile"]}},
                "events": {
                    "data": [{"type": "event", "attributes": ev} for ev in entry["events"]]
                },
            }
            if entry.get("backfill") is not None:
                attributes["backfill"] = bool(entry["backfill"])
            data.append({"type": "event-bulk-create", "attributes": attributes})
        body = {
            "data": {
                "type": "event-bulk-create-job",
                "attributes": {"events-bulk-create": {"data": data}},
            }
        }
        self.request("POST", "/api/event-bulk-create-jobs", json=body, deadline=deadline)

    def create_event_bulk_job_now(
        self, entries: list[dict[str, Any]], *, deadline: Deadline = Deadline.never()
    ) -> None:
        """`create_event_bulk_job` for a caller with another way to send the events (one POST
        /api/events each): the request goes now or not at all.

        No wait for the rate limiter: SlotUnavailable, nothing sent, when it has no
        event-bulk slot free now (or a 429 blocks the family). One attempt: a 429 tells the
        limiter, through the transport as always, and is raised without waiting out its
        Retry-After; so is any other failure. At most half the time left to answer, leaving the
        rest for the caller's other way.
        """
        view = copy.copy(self)  # same connection pool, same limiter state
        view.max_attempts = 1
        connect, read = self.timeout
        view.timeout = (connect, min(read, max(deadline.remaining() / 2, connect)))
        if self.limiter is not None:
            view.limiter = self.limiter.nonblocking()
        view.create_event_bulk_job(entries, deadline=deadline)

    # -- catalog -----------------------------------------------------------------------------------

    def create_catalog_bulk_job(
        self, kind: CatalogKind, op: CatalogOp, resources: list[dict[str, Any]], *,
        deadline: Deadline = Deadline.never(),
    ) -> str:
        """Start a catalog bulk job over ≤100 resource objects; returns the job id.

        Build the resources with `catalog_resource(kind, op, external_id, ...)`.
        """
        path = _catalog_job_path(kind, op)
        if len(resources) > MAX_CATALOG_BULK:
            raise ValueError(f"{len(resources)} resources exceed the bulk limit {MAX_CATALOG_BULK}")
        spec = KINDS[kind]
        body = {
            "data": {
                "type": f"catalog-{kind}-bulk-{op}-job",
                "attributes": {
                    spec.bulk_key: {"data": [{"type": spec.type, **r} for r in resources]}
                },
            }
        }
        resp = self.request("POST", path, json=body, deadline=deadline)
        return str((resp or {})["data"]["id"])

    def get_catalog_bulk_job(
        self, kind: CatalogKind, op: CatalogOp, job_id: str, *,
        deadline: Deadline = Deadline.never(),
    ) -> dict[str, Any]:
        """The job's attributes: status, total/completed/failed counts, errors, ..."""
        body = self.request("GET", f"{_catalog_job_path(kind, op)}/{job_id}", deadline=deadline)
        return dict((body or {})["data"]["attributes"])

    # -- polling -----------------------------------------------------------------------------------

    def wait_for_job(
        self,
        get_fn: Callable[..., dict[str, Any]],
        job_id: str,
        *,
        deadline: Deadline = Deadline.never(),
        poll_interval: float = 2.0,
        backoff: float = 1.0,
        max_interval: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """Poll `get_fn(job_id, deadline=...)` until the job leaves queued/processing.

        Waits `poll_interval` seconds before the second poll, each further wait `backoff` times
        the previous one, at most `max_interval`. Returns the final attributes (status `complete`
        or `cancelled`); raises DeadlineExceeded when the next wait would pass the deadline. A
        job that is still `queued` has not started, so stopping there (as the reference plugin
        did) reports work that has not happened.
        """
        interval = poll_interval
        while True:
            attributes = get_fn(job_id, deadline=deadline)
            status = attributes.get("status")
            if status not in PENDING_STATUSES:
                return attributes
            if interval >= deadline.remaining():
                raise DeadlineExceeded(f"job {job_id} still {status} at the deadline")
            sleep(interval)
            interval *= backoff
            if max_interval is not None:
                interval = min(interval, max_interval)
