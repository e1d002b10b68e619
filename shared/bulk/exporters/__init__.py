"""Per-kind exporters: read commercetools in keyset batches, write Klaviyo through bulk jobs.

`build_exporter(kind, settings, ct, klaviyo)` returns the Exporter (shared.bulk.base) the job
runner calls. Every Klaviyo request goes through the client's retry (429 with Retry-After) and,
when the client was built with one, its rate limiter (`shared.klaviyo.limiter.shared_limiter()`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.bulk.base import KINDS, Exporter, Kind
from shared.klaviyo.catalog_jobs import PollPolicy

if TYPE_CHECKING:
    from shared.commercetools.client import CommercetoolsClient
    from shared.config import Settings
    from shared.klaviyo import KlaviyoClient


def build_exporter(
    kind: Kind, settings: Settings, ct: CommercetoolsClient, klaviyo: KlaviyoClient
) -> Exporter:
    if kind not in KINDS:
        raise ValueError(f"unknown bulk kind {kind!r}")
    page_size = settings.bulk_page_size
    poll = PollPolicy(first=settings.bulk_job_poll_seconds,
                      cap=max(settings.bulk_job_poll_seconds, 10.0))
    if kind == "customers":
        from shared.bulk.exporters.customers import CustomersExporter

        return CustomersExporter(ct, klaviyo, include=settings.customer_properties_include,
                                 exclude=settings.customer_properties_exclude,
                                 rename=settings.customer_properties_rename,
                                 page_size=page_size)
    if kind == "orders":
        from shared.bulk.exporters.orders import OrdersExporter
        from shared.mapping.orders import OrderMappingConfig

        return OrdersExporter(ct, klaviyo, config=OrderMappingConfig.from_settings(settings),
                              page_size=page_size)
    if kind == "categories":
        from shared.bulk.exporters.categories import CategoriesExporter

        return CategoriesExporter(ct, klaviyo, locale=settings.preferred_locale,
                                  page_size=page_size, batch_size=page_size, poll=poll)
    from shared.bulk.exporters.products import ProductsExporter
    from shared.mapping.catalog import CatalogConfig

    return ProductsExporter(ct, klaviyo, config=CatalogConfig.from_settings(settings),
                            page_size=page_size, batch_size=page_size, poll=poll)


__all__ = ["build_exporter"]
