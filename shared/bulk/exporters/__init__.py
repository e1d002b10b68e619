"""Per-kind exporters: read commercetools in keyset batches, write Klaviyo through bulk jobs.

`build_exporter(kind, settings, ct, klaviyo, since=None)` returns the Exporter (shared.bulk.base)
the job runner calls, from the `BUILDERS` table; the catalog kinds' exporters are also
DeletingExporters (`DELETING`: deleteAll). Each exporter states its resource and mapping; the read
loop they share is keyset.py. Every Klaviyo request goes through the client's retry (429 with
Retry-After) and, when the client was built with one, its rate limiter
(`shared.klaviyo.limiter.shared_limiter()`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from shared.bulk.base import Exporter, Kind
from shared.klaviyo.catalog_jobs import PollPolicy

if TYPE_CHECKING:
    from shared.commercetools.client import CommercetoolsClient
    from shared.config import Settings
    from shared.klaviyo import KlaviyoClient

# (settings, ct, klaviyo, since) -> the kind's exporter. The exporter modules are imported by
# their builder only: a process builds the kinds it runs.
Builder = Callable[["Settings", "CommercetoolsClient", "KlaviyoClient", "datetime | None"],
                   Exporter]


def _poll(settings: Settings) -> PollPolicy:
    return PollPolicy(first=settings.bulk_job_poll_seconds,
                      cap=max(settings.bulk_job_poll_seconds, 10.0))


def _customers(settings: Settings, ct: CommercetoolsClient, klaviyo: KlaviyoClient,
               since: datetime | None) -> Exporter:
    from shared.bulk.exporters.customers import CustomersExporter

    return CustomersExporter(ct, klaviyo, include=settings.customer_properties_include,
                             exclude=settings.customer_properties_exclude,
                             rename=settings.customer_properties_rename,
                             page_size=settings.bulk_page_size, since=since)


def _orders(settings: Settings, ct: CommercetoolsClient, klaviyo: KlaviyoClient,
            since: datetime | None) -> Exporter:
    from shared.bulk.exporters.orders import OrdersExporter
    from shared.mapping.orders import OrderMappingConfig

    return OrdersExporter(ct, klaviyo, config=OrderMappingConfig.from_settings(settings),
                          page_size=settings.bulk_page_size, since=since)


def _categories(settings: Settings, ct: CommercetoolsClient, klaviyo: KlaviyoClient,
                since: datetime | None) -> Exporter:
    from shared.bulk.exporters.categories import CategoriesExporter

    return CategoriesExporter(ct, klaviyo, locale=settings.preferred_locale,
                              page_size=settings.bulk_page_size,
                              batch_size=settings.bulk_page_size, poll=_poll(settings),
                              since=since)


def _products(settings: Settings, ct: CommercetoolsClient, klaviyo: KlaviyoClient,
              since: datetime | None) -> Exporter:
    from shared.bulk.exporters.products import ProductsExporter
    from shared.mapping.catalog import CatalogConfig

    return ProductsExporter(ct, klaviyo, config=CatalogConfig.from_settings(settings),
                            page_size=settings.bulk_page_size,
                            batch_size=settings.bulk_page_size, poll=_poll(settings),
                            since=since)


BUILDERS: dict[Kind, Builder] = {
    "customers": _customers,
    "orders": _orders,
    "categories": _categories,
    "products": _products,
}
# The kinds whose exporters are DeletingExporters (deleteAll), known without building one (the
# API refuses a deleteAll for the others; tests/test_bulk_exporters.py checks the two agree).
DELETING: frozenset[Kind] = frozenset({"categories", "products"})


def build_exporter(
    kind: Kind, settings: Settings, ct: CommercetoolsClient, klaviyo: KlaviyoClient, *,
    since: datetime | None = None,
) -> Exporter:
    """The kind's exporter; with `since`, it reads only records modified at or after it."""
    builder = BUILDERS.get(kind)
    if builder is None:
        raise ValueError(f"unknown bulk kind {kind!r}")
    return builder(settings, ct, klaviyo, since)


__all__ = ["BUILDERS", "DELETING", "Builder", "build_exporter"]
