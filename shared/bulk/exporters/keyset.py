"""The one read loop of the bulk exporters: keyset pages of a commercetools resource, read one page
ahead, mapped into rows, cut into Klaviyo writes that are sent while reading goes on.

An exporter (a `KeysetExporter`) states only what is its own: what it reads (`Source`: the
resource, the pydantic model of a document, expansions and filters), how one record maps to a
payload, how big one write and one batch may be (`Shape`), and how a write is sent. This module
owns the rest:

- paging (pages.py): `sort=id asc`, `id > cursor` (and `id <= through` in a partition's range;
  with `since`, `lastModifiedAt >= since`), or the next ids of a partial sync;
- the read budget: no page is started once half the batch's time is spent reading;
- pipelining: while one page is mapped and its writes are sent, the next page is already being
  read (in a thread of its own), and up to `in_flight` writes are in flight at once (each in a
  copy of the caller's context, so a partition's Klaviyo budget slots still apply to them);
- the stop conditions, and the cursor: the batch's cursor is the last record of what it SENT.
  Rows read but not sent (a part-filled last write handed back, a page read ahead) are read
  again by the next batch, so a redelivered task still counts every record once;
- "document unreadable" (a document its model refuses) and an unexpected exception mapping one
  record: each is that record's error, never the batch's.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar, cast

from pydantic import BaseModel, ValidationError

from shared.bulk.base import BatchResult, Kind, Tally, unexpected_error
from shared.bulk.exporters.pages import (
    Doc,
    Page,
    ReadAhead,
    ReadBudget,
    modified_since,
    next_page,
    since_predicate,
    sorted_ids,
)
from shared.commercetools.client import MAX_LIMIT, CommercetoolsClient
from shared.deadline import Deadline
from shared.errors import ConnectorError
from shared.klaviyo import KlaviyoClient
from shared.klaviyo.batches import RecordError
from shared.log import Logger, get_logger

M = TypeVar("M", bound=BaseModel)
P = TypeVar("P")

__all__ = ["Doc", "KeysetExporter", "M", "P", "Row", "Sent", "Shape", "Source"]


@dataclass(frozen=True)
class Source:
    """What an exporter reads: the commercetools resource, its documents' model, the word for
    one of them (log lines: "customer document unreadable", ctCustomerId), expansions and
    filters."""

    resource: str
    model: type[BaseModel]
    noun: str
    expand: tuple[str, ...] = ()
    where: tuple[str, ...] = ()


@dataclass
class Row(Generic[P]):
    """One commercetools record of the batch: its payload, or why it has none (an error; neither:
    skipped, nothing to send). `units` is what the payload takes of a write (profiles, events,
    variants)."""

    ct_id: str
    payload: P | None = None
    error: RecordError | None = None
    units: int = 0


@dataclass(frozen=True)
class Shape:
    """How much one write (or one batch) holds: at most `units` payload units and `rows`
    records (None: no limit of that kind). `per_record`, the most units one record can yield,
    lets a page be sized to what still fits (None: unknown; the average so far is used)."""

    units: int | None = None
    rows: int | None = None
    per_record: int | None = None

    def filled(self, rows: int, units: int) -> bool:
        return ((self.units is not None and units >= self.units)
                or (self.rows is not None and rows >= self.rows))


@dataclass
class Sent:
    """What one write did: the records Klaviyo refused, its requests, and fields for the batch's
    log line (numbers are added up, lists joined)."""

    rejected: list[RecordError] = field(default_factory=list)
    requests: int = 0
    fields: dict[str, Any] = field(default_factory=dict)


def _take(rows: Sequence[Row[Any]], shape: Shape) -> int:
    """How many leading rows make one write: as many as fit `shape`, at least one."""
    taken = units = 0
    for row in rows:
        if taken and ((shape.units is not None and units + row.units > shape.units)
                      or (shape.rows is not None and taken >= shape.rows)):
            break
        taken += 1
        units += row.units
    return taken


class _Writes(Generic[P]):
    """The batch's writes, in order, up to `in_flight` of them sent at once."""

    def __init__(self, send: Callable[[list[Row[P]], Deadline], Sent], in_flight: int,
                 deadline: Deadline) -> None:
        self._send = send
        self._deadline = deadline
        self._pool = ThreadPoolExecutor(max_workers=max(1, in_flight),
                                        thread_name_prefix="bulk-send")
        self.cut: list[tuple[list[Row[P]], Future[Sent]]] = []

    def submit(self, rows: list[Row[P]]) -> None:
        context = contextvars.copy_context()  # the partition's Klaviyo budget slots (budget.py)
        self.cut.append((rows, self._pool.submit(context.run, self._send, rows,
                                                 self._deadline)))

    def failed(self) -> bool:
        """Whether a write has failed already (the batch will fail: no point reading on)."""
        return any(f.done() and f.exception() is not None for _, f in self.cut)

    def results(self) -> list[tuple[list[Row[P]], Sent]]:
        """Every write's outcome. The first failure fails the batch: writes not yet started are
        cancelled, those in flight waited for (whatever was accepted is sent again, idempotently,
        when the runner retries the batch)."""
        futures = [f for _, f in self.cut]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            failure = future.exception() if future.done() else None
            if failure is not None:
                self.close()
                raise failure
        return [(rows, future.result()) for rows, future in self.cut]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class KeysetExporter(Generic[M, P]):
    """A bulk exporter over one commercetools resource (see the module's docstring).

    Subclasses set `kind` and `source` (and where they differ, the policy attributes below) and
    implement `shape`, `map_record` and `send`; where they need it, `batch_shape`, `keep`,
    `prepare` and `units`."""

    kind: Kind
    source: ClassVar[Source]
    # At most this many writes per batch (None: as many as the batch shape holds).
    max_writes: ClassVar[int | None] = None
    # A part-filled last write waits for the next batch, unless the resource ends here or the
    # batch has nothing else to send: every write but a job's last stays full.
    hand_back_partial: ClassVar[bool] = False
    # At the resource's end, everything pending goes in one last write, records split across
    # Klaviyo requests if need be (`send` cuts requests itself): nothing is handed back then, so
    # no record needs to stay whole within one request.
    whole_tail: ClassVar[bool] = False

    def __init__(self, ct: CommercetoolsClient, klaviyo: KlaviyoClient, *,
                 page_size: int = MAX_LIMIT, since: datetime | None = None,
                 in_flight: int = 1) -> None:
        if not 1 <= page_size <= MAX_LIMIT:
            raise ValueError(f"page_size must be between 1 and {MAX_LIMIT}")
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self.ct = ct
        self.klaviyo = klaviyo
        self.page_size = page_size
        self.since = since
        self.in_flight = in_flight

    # ---- what each exporter states --------------------------------------------------------------

    def shape(self) -> Shape:
        """One write's size."""
        raise NotImplementedError

    def batch_shape(self) -> Shape:
        """When the batch has read enough (default: one write's worth)."""
        return self.shape()

    def keep(self, doc: Doc) -> bool:
        """Whether a document asked for by id is one this exporter writes."""
        return True

    def prepare(self, records: list[M], memo: dict[str, Any], *, deadline: Deadline) -> None:
        """Before a page's records are mapped: lookups for the whole page (`memo` lives for the
        batch)."""

    def map_record(self, record: M, memo: dict[str, Any]) -> P | None:
        """The record's payload (None: nothing to send, skipped)."""
        raise NotImplementedError

    def units(self, payload: P) -> int:
        return 1

    def send(self, rows: list[Row[P]], deadline: Deadline) -> Sent:
        """Write these rows' payloads (rows without one are there for the record count)."""
        raise NotImplementedError

    # ---- the loop -------------------------------------------------------------------------------

    def run_batch(
        self, *, after: str | None, ids: Sequence[str] | None, deadline: Deadline,
        through: str | None = None,
    ) -> BatchResult:
        wanted = sorted_ids(ids)
        source = self.source
        where = source.where if self.since is None else (*source.where,
                                                         since_predicate(self.since))
        keep = self.keep if self.since is None else self._keep_since

        def read(cursor: str | None, limit: int) -> Page:
            return next_page(self.ct, source.resource, after=cursor, ids=wanted, limit=limit,
                             where=where, expand=source.expand, keep=keep, deadline=deadline,
                             through=through)

        reader = ReadAhead(read)
        writes: _Writes[P] = _Writes(self.send, self.in_flight, deadline)
        try:
            return self._run(after, reader, writes, deadline)
        finally:
            reader.close()
            writes.close()

    def _run(self, after: str | None, reader: ReadAhead, writes: _Writes[P],
             deadline: Deadline) -> BatchResult:
        shape, batch = self.shape(), self.batch_shape()
        budget = ReadBudget(deadline)
        memo: dict[str, Any] = {}
        pending: list[Row[P]] = []
        not_found: list[str] = []
        read_rows = read_units = 0
        cursor, exhausted = after, False
        page = reader.next(after, self._room(batch, 0, 0, 0))
        while True:
            cursor, exhausted = page.cursor, page.exhausted
            not_found.extend(page.missing)
            ahead = 0 if exhausted or not budget.more() else \
                self._room(batch, read_rows, read_units, len(page.docs))
            if ahead > 0:  # read the next page while this one is mapped and sent
                reader.start(cursor, ahead)
            rows = self._rows(page.docs, memo, deadline)
            pending.extend(rows)
            read_rows += len(rows)
            read_units += sum(r.units for r in rows)
            if not (exhausted and self.whole_tail):
                while self._writes_left(writes) and shape.filled(
                        len(pending), sum(r.units for r in pending)):
                    n = _take(pending, shape)
                    writes.submit(pending[:n])
                    pending = pending[n:]
            if (exhausted or batch.filled(read_rows, read_units) or not budget.more()
                    or not self._writes_left(writes) or writes.failed()):
                break
            page = reader.next(cursor, self._room(batch, read_rows, read_units, 0))

        if pending and self._writes_left(writes) and not writes.failed() and (
                exhausted or not (self.hand_back_partial and writes.cut)):
            writes.submit(pending)
            pending = []
        if pending:  # handed back: the batch ends after its last write
            cursor, exhausted = writes.cut[-1][0][-1].ct_id, False
        return self._result(writes.results(), not_found, cursor=cursor, done=exhausted)

    @property
    def _log(self) -> Logger:
        return get_logger(f"bulk.{self.kind}")

    def _writes_left(self, writes: _Writes[P]) -> bool:
        return self.max_writes is None or len(writes.cut) < self.max_writes

    def _room(self, batch: Shape, rows: int, units: int, unread: int) -> int:
        """The next page's size: what the batch can still take, counting the `unread` records
        of the page being mapped at their most (or, not knowing that, at the average so far);
        0: the batch may be full without it."""
        room = self.page_size
        if batch.rows is not None:
            room = min(room, batch.rows - rows - unread)
        if batch.units is not None:
            if batch.per_record is not None:
                room = min(room, (batch.units - units - unread * batch.per_record)
                           // batch.per_record)
            elif unread and rows and units + unread * units / rows >= batch.units:
                room = 0
        return max(0, room)

    def _keep_since(self, doc: Doc) -> bool:
        assert self.since is not None
        return self.keep(doc) and modified_since(doc, self.since)

    def _rows(self, docs: list[Doc], memo: dict[str, Any], deadline: Deadline) -> list[Row[P]]:
        validated: list[tuple[str, M | None]] = []
        noun = self.source.noun
        for doc in docs:
            ct_id = str(doc.get("id"))
            try:
                validated.append((ct_id, cast(M, self.source.model.model_validate(doc))))
            except ValidationError:
                self._log.warning(f"{noun} document unreadable",
                                  **{f"ct{noun.capitalize()}Id": ct_id})
                validated.append((ct_id, None))
        self.prepare([r for _, r in validated if r is not None], memo, deadline=deadline)
        rows: list[Row[P]] = []
        for ct_id, record in validated:
            if record is None:
                rows.append(Row(ct_id, error=RecordError(ct_id=ct_id,
                                                         code="unreadable_document")))
                continue
            try:
                payload = self.map_record(record, memo)
            except ConnectorError:
                raise  # an outage (a deadline, a lookup): the batch's, retried
            except Exception as exc:  # noqa: BLE001 - one record's problem, not the job's
                rows.append(Row(ct_id, error=unexpected_error(ct_id, exc)))
                continue
            rows.append(Row(ct_id, payload, units=self.units(payload)
                            if payload is not None else 0))
        return rows

    def _result(self, done_writes: list[tuple[list[Row[P]], Sent]], not_found: list[str], *,
                cursor: str | None, done: bool) -> BatchResult:
        tally = Tally()
        tally.not_found = not_found
        requests = 0
        fields: dict[str, Any] = {}
        for rows, sent in done_writes:
            for row in rows:
                tally.read += 1
                if row.error is not None:
                    tally.fail(row.error)
                elif row.payload is None:
                    tally.skip(row.ct_id)
            for error in sent.rejected:
                tally.fail(error)
            requests += sent.requests
            _merge(fields, sent.fields)
        result = tally.result(cursor=cursor, done=done)
        self._log.info(f"{self.kind} batch exported", read=result.read, sent=result.sent,
                 skipped=result.skipped, failed=result.failed, cursor=cursor, done=done,
                 requests=requests, **fields)
        return result


def _merge(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, list):
            into.setdefault(key, []).extend(value)
        else:
            into[key] = into.get(key, 0) + value
