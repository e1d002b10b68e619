"""What the catalog exporters share: existence lookups, listings, and create-or-update phases of
catalog bulk jobs. (The read loop all exporters share is keyset.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from shared.bulk.base import Tally
from shared.bulk.exporters.keyset import KeysetExporter, M, P
from shared.commercetools.client import CommercetoolsClient
from shared.deadline import Deadline
from shared.http import chunks_within
from shared.klaviyo import MAX_CATALOG_BULK, KlaviyoClient, catalog_id, catalog_resource
from shared.klaviyo.batches import Outcome, Rejected
from shared.klaviyo.bulk import CatalogOp
from shared.klaviyo.catalog import CATALOG_ID_PREFIX, KINDS, CatalogKind
from shared.klaviyo.catalog_jobs import CatalogRecord, PollPolicy, run_catalog_jobs
from shared.klaviyo.client import filter_string

# Klaviyo filters travel in the query string; stay well below common 8 KB URL limits.
_MAX_FILTER_CHARS = 4000


def external_id(klaviyo_id: str) -> str:
    return klaviyo_id[len(CATALOG_ID_PREFIX):] if klaviyo_id.startswith(CATALOG_ID_PREFIX) \
        else klaviyo_id


def _filter_chunks(external_ids: Sequence[str]) -> Iterable[list[str]]:
    return chunks_within(
        external_ids, lambda ext: len(quote(filter_string(catalog_id(ext)), safe="")) + 1,
        max_items=MAX_CATALOG_BULK, max_chars=_MAX_FILTER_CHARS, base_chars=len("any(ids,[])"))


def existing_ids(
    klaviyo: KlaviyoClient, kind: CatalogKind, external_ids: Iterable[str], *,
    deadline: Deadline,
) -> set[str]:
    """Which of these catalog objects exist in Klaviyo (external ids), by `any(ids,[...])`
    lookups of ≤100 ids (one GET each, on the generous catalog read budget)."""
    wanted = list(dict.fromkeys(external_ids))
    found: set[str] = set()
    collection = KINDS[kind].collection
    for chunk in _filter_chunks(wanted):
        expression = "any(ids,[" + ",".join(filter_string(catalog_id(e)) for e in chunk) + "])"
        params = {"filter": expression, f"fields[{KINDS[kind].type}]": "external_id"}
        for resource in klaviyo.paginate(f"/api/{collection}", params=params,
                                         deadline=deadline):
            found.add(external_id(str(resource.get("id", ""))))
    return found & set(wanted)


@dataclass(frozen=True)
class CatalogWrite:
    """What to write for one catalog object: its external id, the CT record it belongs to, and
    its attributes/relationships (as the catalog mapper builds them)."""

    ct_id: str
    external_id: str
    attributes: dict[str, Any]
    relationships: dict[str, Any] | None = None

    def record(self, kind: CatalogKind, op: CatalogOp) -> CatalogRecord:
        resource = catalog_resource(kind, op, self.external_id, self.attributes,
                                    self.relationships)
        return CatalogRecord(self.ct_id, resource)


def upsert_phase(
    klaviyo: KlaviyoClient, kind: CatalogKind, writes: Sequence[CatalogWrite],
    existing: set[str], *, deletes: Sequence[tuple[str, str]] = (), deadline: Deadline,
    poll: PollPolicy, sleep: Callable[[float], None] = time.sleep,
) -> Outcome[CatalogRecord]:
    """Create the objects not in `existing`, update the others and delete `deletes` ((ct_id,
    external_id) pairs), as bulk jobs started together and then waited for.

    `existing` can be stale by the time the jobs run (the realtime function writes too): a create
    refused because the object exists by then is sent again as an update, an update refused
    because it is gone as a create (one more lookup, one more job round, only when needed)."""
    creates = {w.external_id: w for w in writes if w.external_id not in existing}
    updates = {catalog_id(w.external_id): w for w in writes if w.external_id in existing}
    groups: list[tuple[CatalogKind, Any, Sequence[CatalogRecord]]] = [
        (kind, "delete", [CatalogRecord(ct, catalog_resource(kind, "delete", ext))
                          for ct, ext in deletes]),
        (kind, "create", [w.record(kind, "create") for w in creates.values()]),
        (kind, "update", [w.record(kind, "update") for w in updates.values()]),
    ]
    outcome = run_catalog_jobs(klaviyo, groups, deadline=deadline, poll=poll, sleep=sleep)

    refused: dict[str, tuple[CatalogWrite, bool, Rejected[CatalogRecord]]] = {}
    for rejected in outcome.rejected:
        resource = rejected.item.resource
        if "attributes" not in resource:  # a delete: nothing to repair
            continue
        ext = resource["attributes"].get("external_id")  # only creates carry it
        if ext is not None and ext in creates:
            refused.setdefault(ext, (creates[ext], True, rejected))
        elif resource.get("id") in updates:
            write = updates[resource["id"]]
            refused.setdefault(write.external_id, (write, False, rejected))
    if not refused:
        return outcome
    exists_now = existing_ids(klaviyo, kind, refused, deadline=deadline)
    again_create = [w for ext, (w, was_create, _) in refused.items()
                    if not was_create and ext not in exists_now]
    again_update = [w for ext, (w, was_create, _) in refused.items()
                    if was_create and ext in exists_now]
    if not again_create and not again_update:
        return outcome
    again = run_catalog_jobs(
        klaviyo, [(kind, "create", [w.record(kind, "create") for w in again_create]),
                  (kind, "update", [w.record(kind, "update") for w in again_update])],
        deadline=deadline, poll=poll, sleep=sleep)
    superseded = {id(refused[w.external_id][2]) for w in again_create + again_update}
    outcome.rejected = [r for r in outcome.rejected if id(r) not in superseded]
    outcome.sent.extend(again.sent)
    outcome.rejected.extend(again.rejected)
    outcome.requests += again.requests
    return outcome


def list_catalog(
    klaviyo: KlaviyoClient, kind: CatalogKind, *, max_pages: int, deadline: Deadline,
) -> tuple[list[str], bool]:
    """External ids of up to `max_pages` pages of this kind's catalog objects (ids only), and
    whether the listing was read to its end."""
    spec = KINDS[kind]
    body = klaviyo.request("GET", f"/api/{spec.collection}",
                           params={f"fields[{spec.type}]": "external_id"}, deadline=deadline)
    found: list[str] = []
    pages = 0
    while body is not None:
        pages += 1
        found.extend(external_id(str(r.get("id", ""))) for r in body.get("data") or [])
        next_url = (body.get("links") or {}).get("next")
        if not next_url:
            return found, True
        if pages >= max_pages:
            return found, False
        body = klaviyo.request("GET", next_url, deadline=deadline)
    return found, True


class CatalogExporter(KeysetExporter[M, P]):
    """A catalog kind: one round of create-or-update catalog jobs a batch of up to `batch_size`
    records, and deleteAll by listings of up to `delete_pages` pages."""

    max_writes = 1

    def __init__(self, ct: CommercetoolsClient, klaviyo: KlaviyoClient, *, page_size: int,
                 batch_size: int, delete_pages: int, poll: PollPolicy,
                 sleep: Callable[[float], None], since: datetime | None) -> None:
        super().__init__(ct, klaviyo, page_size=page_size, since=since)
        self.batch_size = max(1, batch_size)
        self.delete_pages = max(1, delete_pages)
        self.poll = poll
        self.sleep = sleep

    def upsert(self, kind: CatalogKind, writes: Sequence[CatalogWrite], *, existing: set[str],
               deletes: Sequence[tuple[str, str]] = (),
               deadline: Deadline) -> Outcome[CatalogRecord]:
        """One round of jobs for these objects (`existing`: those Klaviyo has; upsert_phase)."""
        return upsert_phase(self.klaviyo, kind, writes, existing, deletes=deletes,
                            deadline=deadline, poll=self.poll, sleep=self.sleep)

    def delete(self, kind: CatalogKind, external_ids: Sequence[str], tally: Tally, *,
               deadline: Deadline) -> None:
        """Delete these objects (deleteAll), each one counted as read, and failed if refused."""
        tally.read += len(external_ids)
        if external_ids:
            outcome = self.upsert(kind, [], deletes=[(e, e) for e in external_ids],
                                  existing=set(), deadline=deadline)
            tally.fail_all(outcome.rejected)
