"""The contract between the bulk job runner (state, lock, tasks) and the per-kind exporters.

A job is a chain of batches. Each batch starts after a cursor (the last commercetools id already
done), reads as many CT pages as fill the kind's Klaviyo bulk request, sends them, and says where
it stopped. Running the same batch twice sends the same idempotent data, so the runner may redeliver
a batch whose result it failed to save.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from shared.deadline import Deadline

Kind = Literal["customers", "orders", "categories", "products"]
KINDS: tuple[Kind, ...] = ("customers", "orders", "categories", "products")


@dataclass(frozen=True)
class RecordError:
    """One record Klaviyo refused. No PII: the CT id and Klaviyo's error code/pointer only."""

    ct_id: str
    status: int | None = None
    code: str | None = None
    pointer: str | None = None


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
        self, *, after: str | None, ids: Sequence[str] | None, deadline: Deadline
    ) -> BatchResult:
        """Sync the next batch of records after `after` (restricted to `ids` when given)."""
        ...

    def delete_batch(self, *, deadline: Deadline) -> BatchResult:
        """Delete one batch of this kind's objects in Klaviyo (deleteAll); `done` when none are
        left. Only categories and products support it."""
        ...
