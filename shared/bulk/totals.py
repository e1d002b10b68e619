"""What a bulk job will read, counted once at its start: commercetools' `withTotal` on the
query the kind's exporter pages through (the same `where`), so progress has a real denominator."""

from __future__ import annotations

from collections.abc import Callable

from shared.bulk.base import Kind
from shared.commercetools.client import CommercetoolsClient
from shared.deadline import Deadline

Counter = Callable[[Kind], int]

# (resource, where) each exporter reads; products: published only (as the products exporter).
QUERIES: dict[Kind, tuple[str, tuple[str, ...]]] = {
    "customers": ("customers", ()),
    "orders": ("orders", ()),
    "categories": ("categories", ()),
    "products": ("products", ("masterData(published = true)",)),
}


def commercetools_counter(ct: CommercetoolsClient, *, seconds: float = 30.0) -> Counter:
    def count(kind: Kind) -> int:
        resource, where = QUERIES[kind]
        return ct.count(resource, where=where, deadline=Deadline.after(seconds))

    return count
