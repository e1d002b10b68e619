"""The contract between the bulk job runner (state, lock, tasks) and the per-kind exporters.

A job is a chain of batches. Each batch starts after a cursor (the last commercetools id already
done), reads as many CT pages as fill the kind's Klaviyo bulk requests, sends them (reading the
next page while the last is mapped and sent: shared/bulk/exporters/keyset.py), and says where it
stopped: after the last record it sent. Running the same batch twice sends the same idempotent
data, so the runner may redeliver a batch whose result it failed to save.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from shared.deadline import Deadline
from shared.klaviyo.batches import RecordError, Rejected
from shared.log import get_logger

Kind = Literal["customers", "orders", "categories", "products"]
KINDS: tuple[Kind, ...] = ("customers", "orders", "categories", "products")

log = get_logger("bulk")


@dataclass(frozen=True)
class BatchResult:
    read: int = 0  # CT records read
    sent: int = 0  # records accepted by Klaviyo (or queued in an accepted bulk job)
    skipped: int = 0  # records with nothing to send (e.g. customer without email)
    failed: int = 0  # records Klaviyo refused (each listed in `errors`)
    errors: list[RecordError] = field(default_factory=list)
    cursor: str | None = None  # last CT id this batch covered; the next batch starts after it
    done: bool = False  # nothing left after `cursor`
    not_found: list[str] = field(default_factory=list)  # partial sync: ids CT does not have


class Exporter(Protocol):
    kind: Kind

    def run_batch(
        self, *, after: str | None, ids: Sequence[str] | None, deadline: Deadline,
        through: str | None = None,
    ) -> BatchResult:
        """Sync the next batch of records after `after` (restricted to `ids` when given; with
        `through`, to a partition's id range: ids <= through)."""
        ...


@runtime_checkable
class DeletingExporter(Exporter, Protocol):
    """An exporter that can also delete this kind's objects in Klaviyo (deleteAll): only the
    catalog kinds. Whoever runs a deleteAll checks `isinstance(exporter, DeletingExporter)`."""

    def delete_batch(self, *, deadline: Deadline) -> BatchResult:
        """Delete one batch of this kind's objects in Klaviyo; `done` when none are left."""
        ...


def unexpected_error(ct_id: str, exc: Exception) -> RecordError:
    """An exception nobody expected while mapping one record (a bug, or data no model foresaw)
    is that record's error, never the batch's: logged by type (its text can echo customer
    data), counted and reported with the record's id."""
    log.error("record could not be mapped; reported as a record error", ctId=ct_id,
              error=type(exc).__name__)
    return RecordError(ct_id=ct_id, code=f"unexpected_{type(exc).__name__}")


class Tally:
    """Per-CT-record result of a batch: a record fails if any of its payloads was rejected (its
    first error is reported); skipped records sent nothing; every other record read was sent."""

    def __init__(self) -> None:
        self.read = 0
        self.skipped: set[str] = set()
        self.errors: dict[str, RecordError] = {}
        self.not_found: list[str] = []  # partial sync: asked-for ids commercetools lacks

    def skip(self, ct_id: str) -> None:
        self.skipped.add(ct_id)

    def fail(self, error: RecordError) -> None:
        if error.ct_id not in self.skipped:
            self.errors.setdefault(error.ct_id, error)

    def fail_all(self, rejected: Iterable[Rejected[Any]]) -> None:
        for item in rejected:
            self.fail(item.error)

    def result(self, *, cursor: str | None, done: bool) -> BatchResult:
        failed = len(self.errors)
        skipped = len(self.skipped)
        return BatchResult(
            read=self.read, sent=self.read - skipped - failed, skipped=skipped, failed=failed,
            errors=list(self.errors.values()), cursor=cursor, done=done,
            # ids past the cursor (a batch cut short) are the next batch's to report
            not_found=[i for i in self.not_found if cursor is None or i <= cursor],
        )
