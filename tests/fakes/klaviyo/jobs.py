"""Bulk jobs: profile import, event bulk create, catalog bulk create/update/delete; `queued` /
`processing` before `complete` (`job_status_sequence`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tests.fakes.klaviyo.catalog import MAX_CATALOG_BULK, _CatalogSpec
from tests.fakes.klaviyo.errors import ApiFailure, _invalid
from tests.fakes.klaviyo.state import BULK_EVENT_ATTRIBUTES, MATCHED_IDENTIFIERS, _now

if TYPE_CHECKING:
    from tests.fakes.klaviyo.base import FakeApi
else:
    FakeApi = object  # the type checker's view of the sibling families; nothing at run time

MAX_BULK_PROFILES = 10_000
MAX_BULK_EVENTS = 1_000


class BulkJobs(FakeApi):
    """Mixin of FakeKlaviyo: state `jobs`."""

    jobs: dict[str, dict[str, Any]]
    job_status_sequence: list[str]


    def _new_job(self, job_type: str, total: int, failures: list[dict[str, Any]],
                 path: str, import_errors: list[dict[str, Any]] | None = None
                 ) -> dict[str, Any]:
        now = datetime.now(UTC)
        job: dict[str, Any] = {
            "id": uuid.uuid4().hex, "type": job_type, "path": path, "polls": 0,
            "total": total, "failures": failures, "import_errors": import_errors or [],
            "created_at": now.isoformat(),
            "expires_at": (now + timedelta(days=7)).isoformat(),
        }
        self.jobs[job["id"]] = job
        return job

    def _job_resource(self, job: dict[str, Any], status: str) -> dict[str, Any]:
        done = status in ("complete", "cancelled")
        attributes: dict[str, Any] = {
            "status": status,
            "created_at": job["created_at"],
            "total_count": job["total"],
            "completed_count": job["total"] - len(job["failures"]) if done else 0,
            "failed_count": len(job["failures"]) if done else 0,
            "completed_at": _now() if done else None,
            "expires_at": job["expires_at"],
        }
        if job["type"] != "profile-bulk-import-job":
            attributes["errors"] = job["failures"] if done else []
        else:
            attributes["started_at"] = job["created_at"] if status != "queued" else None
        return {"type": job["type"], "id": job["id"], "attributes": attributes,
                "links": {"self": f"{self.url}{job['path']}/{job['id']}/"}}

    def _poll_job(self, job: dict[str, Any]) -> dict[str, Any]:
        job["polls"] += 1
        sequence = self.job_status_sequence
        status = sequence[job["polls"] - 1] if job["polls"] <= len(sequence) else "complete"
        return self._job_resource(job, status)

    def _profile_bulk_import(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != "profile-bulk-import-job":
            raise _invalid("/data/type", "The resource type must be 'profile-bulk-import-job'.")
        profiles = ((data.get("attributes") or {}).get("profiles") or {}).get("data")
        if not isinstance(profiles, list) or not profiles:
            raise _invalid("/data/attributes/profiles/data", "profiles are required.")
        if len(profiles) > MAX_BULK_PROFILES:
            raise _invalid("/data/attributes/profiles/data",
                           f"A maximum of {MAX_BULK_PROFILES} profiles is allowed per request.")
        # Schema problems fail the whole request (all-or-nothing validation, as Klaviyo does).
        for i, resource in enumerate(profiles):
            base = f"/data/attributes/profiles/data/{i}"
            if not isinstance(resource, dict) or resource.get("type") != "profile":
                raise _invalid(f"{base}/type", "The resource type must be 'profile'.")
            self._validate_profile(resource.get("attributes"), f"{base}/attributes",
                                   check_phone=False)
            if not resource.get("id") and not self._has_identifier(resource["attributes"]):
                raise _invalid(f"{base}/attributes", "A profile identifier is required.")
        # Per-profile processing problems become import errors; the rest are applied.
        import_errors: list[dict[str, Any]] = []
        for i, resource in enumerate(profiles):
            base = f"/data/attributes/profiles/data/{i}/attributes"
            try:
                self._upsert_profile(resource, base)
            except ApiFailure as failure:
                err = failure.errors[0]
                import_errors.append({
                    "type": "import-error", "id": str(uuid.uuid4()),
                    "attributes": {"code": err["code"], "title": err["title"],
                                   "detail": err["detail"], "source": err["source"],
                                   "original_payload": resource.get("attributes")},
                })
        job = self._new_job("profile-bulk-import-job", len(profiles),
                            [e["attributes"] for e in import_errors],
                            "/api/profile-bulk-import-jobs", import_errors)
        return 202, {"data": self._job_resource(job, "queued")}, {}

    def _event_bulk_create(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != "event-bulk-create-job":
            raise _invalid("/data/type", "The resource type must be 'event-bulk-create-job'.")
        entries = ((data.get("attributes") or {}).get("events-bulk-create") or {}).get("data")
        root = "/data/attributes/events-bulk-create/data"
        if not isinstance(entries, list) or not entries:
            raise _invalid(root, "events-bulk-create data is required.")
        total = sum(len(((e.get("attributes") or {}).get("events") or {}).get("data") or [])
                    for e in entries if isinstance(e, dict))
        if total > MAX_BULK_EVENTS:
            raise _invalid(root, f"A maximum of {MAX_BULK_EVENTS} events is allowed per request.")
        seen: set[tuple[Any, ...]] = set()
        checked = []
        for i, entry in enumerate(entries):
            base = f"{root}/{i}"
            if not isinstance(entry, dict) or entry.get("type") != "event-bulk-create":
                raise _invalid(f"{base}/type", "The resource type must be 'event-bulk-create'.")
            attrs = entry.get("attributes") or {}
            profile = self._validate_event_profile(attrs.get("profile"),
                                                   f"{base}/attributes/profile")
            identity = self._identity(profile)
            events = (attrs.get("events") or {}).get("data")
            if not isinstance(events, list):
                raise _invalid(f"{base}/attributes/events/data", "events are required.")
            named = []
            for j, event in enumerate(events):
                ebase = f"{base}/attributes/events/data/{j}"
                if not isinstance(event, dict) or event.get("type") != "event":
                    raise _invalid(f"{ebase}/type", "The resource type must be 'event'.")
                metric = self._validate_event(event.get("attributes"), f"{ebase}/attributes",
                                              BULK_EVENT_ATTRIBUTES)
                unique = event["attributes"].get("unique_id")
                if unique:
                    key = (identity, metric, unique)
                    if key in seen:
                        raise _invalid(f"{ebase}/attributes/unique_id",
                                       "unique_id is repeated for the same profile and metric.",
                                       code="duplicate_unique_id")
                    seen.add(key)
                named.append((metric, event["attributes"]))
            checked.append((profile, attrs.get("backfill"), named))
        for profile, backfill, named in checked:
            pid = self._resolve_event_profile(profile)
            for metric, event_attrs in named:
                if backfill is not None and "backfill" not in event_attrs:
                    event_attrs = {**event_attrs, "backfill": backfill}
                self._store_event(pid, metric, event_attrs)
        return 202, None, {}

    def _identity(self, profile: dict[str, Any]) -> Any:
        if profile.get("id"):
            return profile["id"]
        attrs = profile.get("attributes") or {}
        matches = self._matches(attrs)
        if matches:
            return matches[0]
        return tuple((n, str(attrs.get(n)).casefold()) for n in MATCHED_IDENTIFIERS
                     if attrs.get(n))

    def _catalog_bulk(self, spec: _CatalogSpec, op: str, body: Any
                      ) -> tuple[int, Any, dict[str, str]]:
        job_type = f"catalog-{spec.kind}-bulk-{op}-job"
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != job_type:
            raise _invalid("/data/type", f"The resource type must be '{job_type}'.")
        root = f"/data/attributes/{spec.bulk_key}/data"
        resources = ((data.get("attributes") or {}).get(spec.bulk_key) or {}).get("data")
        if not isinstance(resources, list) or not resources:
            raise _invalid(root, f"{spec.bulk_key} are required.")
        if len(resources) > MAX_CATALOG_BULK:
            raise _invalid(root, f"A maximum of {MAX_CATALOG_BULK} resources is allowed.")
        for i, resource in enumerate(resources):
            self._validate_catalog(spec, op, resource, f"{root}/{i}")
        failures = []
        for i, resource in enumerate(resources):
            try:
                self._catalog_apply(spec, op, resource, f"{root}/{i}")
            except ApiFailure as failure:
                err = dict(failure.errors[0])
                failures.append({k: err[k] for k in ("id", "code", "title", "detail", "source")})
        job = self._new_job(job_type, len(resources), failures, f"/api/catalog-{spec.kind}-bulk-"
                            f"{op}-jobs")
        return 202, {"data": self._job_resource(job, "queued")}, {}
