"""Keyset pages of one commercetools resource: one page after a cursor (all records, a
partition's id range, or the next ids of a partial sync), the read budget, and one page read
ahead. The read loop that uses them is keyset.py."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.commercetools.client import CommercetoolsClient, predicate_string
from shared.deadline import Deadline

Doc = dict[str, Any]

__all__ = ["Doc", "Page", "ReadAhead", "ReadBudget", "modified_since", "next_page",
           "since_predicate", "sorted_ids"]


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


def since_predicate(since: datetime) -> str:
    """`lastModifiedAt >= "<iso>"` (UTC, milliseconds; a naive datetime is taken as UTC)."""
    at = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    text = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return f"lastModifiedAt >= {predicate_string(text)}"


def modified_since(doc: Doc, since: datetime) -> bool:
    value = doc.get("lastModifiedAt")
    try:
        modified = datetime.fromisoformat(str(value))
    except ValueError:
        return True  # unknown: read it (its model decides whether it is readable)
    at = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    return modified.tzinfo is None or modified >= at


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


class ReadAhead:
    """At most one page read ahead, in a thread of its own; a page not taken is dropped (the
    next batch reads it again)."""

    def __init__(self, read: Callable[[str | None, int], Page]) -> None:
        self._read = read
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk-read")
        self._ahead: tuple[str | None, Future[Page]] | None = None

    def start(self, after: str | None, limit: int) -> None:
        context = contextvars.copy_context()
        self._ahead = (after, self._pool.submit(context.run, self._read, after, limit))

    def next(self, after: str | None, limit: int) -> Page:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == after:
            return ahead[1].result()
        return self._read(after, limit)

    def close(self) -> None:
        # Waits for a read in flight (bounded by the batch's deadline), so nothing outlives the
        # batch; its page, or its error, belongs to no one.
        self._pool.shutdown(wait=True)
        self._ahead = None
