"""Helpers the exporters share: keyset reading (all records, or a list of ids), the time budget
for reading, catalog existence lookups, and create-or-update catalog phases."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.commercetools.client import CommercetoolsClient, predicate_string
from shared.deadline import Deadline
from shared.http import chunks_within
from shared.klaviyo import MAX_CATALOG_BULK, KlaviyoClient, catalog_id, catalog_resource
from shared.klaviyo.batches import Outcome, Rejected
from shared.klaviyo.bulk import CatalogOp
from shared.klaviyo.catalog import CATALOG_ID_PREFIX, KINDS, CatalogKind
from shared.klaviyo.catalog_jobs import CatalogRecord, PollPolicy, run_catalog_jobs
from shared.klaviyo.client import filter_string

Doc = dict[str, Any]

# Klaviyo filters travel in the query string; stay well below common 8 KB URL limits.
_MAX_FILTER_CHARS = 4000


class ReadBudget:
    """Reading more CT pages stops once `share` of the time left at the start is used, so the
    batch keeps the rest for sending (and for retries of what it sends)."""

    def __init__(self, deadline: Deadline, share: float = 0.5) -> None:
        self._start = time.monotonic()
        self._limit = deadline.remaining() * share

    def more(self) -> bool:
        return time.monotonic() - self._start < self._limit


def sorted_ids(ids: Sequence[str] | None) -> list[str] | None:
    """The requested ids in keyset order (what `id > cursor` means), without repeats."""
    if ids is None:
        return None
    return sorted(set(ids))


@dataclass
class Page:
    docs: list[Doc]
    cursor: str | None  # last id this page covers
    exhausted: bool  # nothing after `cursor`
    missing: tuple[str, ...] = ()  # asked-for ids commercetools does not have


def next_page(
    ct: CommercetoolsClient, resource: str, *, after: str | None, ids: list[str] | None,
    limit: int, where: Sequence[str] = (), expand: Sequence[str] = (),
    keep: Callable[[Doc], bool] | None = None, deadline: Deadline, through: str | None = None,
) -> Page:
    """One keyset page after `after`: all records (`sort=id asc`, `id > after`, `where`; with
    `through`, a partition's range: `id <= through`), or the next `limit` of the sorted `ids`
    (ids that do not exist, or fail `keep`, are passed over)."""
    if ids is None:
        if through is not None:
            where = (*where, f"id <= {predicate_string(through)}")
        docs = ct.query_page(resource, after=after, limit=limit, where=where, expand=expand,
                             deadline=deadline)
        return Page(docs, docs[-1]["id"] if docs else after, len(docs) < limit)
    remaining = [i for i in ids if after is None or i > after]
    todo = remaining[:limit]
    docs = ct.get_by_ids(resource, todo, expand=expand, deadline=deadline) if todo else []
    found = {str(d.get("id")) for d in docs}
    missing = tuple(i for i in todo if i not in found)
    if keep is not None:
        docs = [d for d in docs if keep(d)]
    return Page(docs, todo[-1] if todo else after, len(remaining) <= limit, missing)


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
