"""Categories → Klaviyo catalog categories through catalog-category bulk jobs (≤100 a request).

Create or update: before writing, one `GET /api/catalog-categories?filter=any(ids,[...])` per
≤100 categories says which exist. Those GETs draw on the catalog *read* budget (3,500/min), not
on the bulk-job budget (700/min) that job creation and job polling share, and they let every
category be written in a single job round. The alternative (create everything, then update the
ones refused as existing) needs a second round of jobs and polls on the scarce budget whenever
categories already exist, i.e. on every re-run. A create still refused because the category
appeared meanwhile (the realtime function) is retried as an update.

Jobs are polled until they finish (`queued` and `processing` both mean not yet); per-record job
errors become RecordErrors. The name is `category_attributes`' breadcrumb, as in realtime.

deleteAll: `delete_batch` lists up to 5 pages of Klaviyo categories and deletes them with bulk
delete jobs; it is done when the listing comes back empty or was read to its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.bulk.base import BatchResult, Kind, Tally
from shared.bulk.exporters._common import (
    CatalogExporter,
    CatalogWrite,
    existing_ids,
    list_catalog,
)
from shared.bulk.exporters.keyset import Row, Sent, Shape, Source
from shared.commercetools.client import MAX_LIMIT, CommercetoolsClient
from shared.commercetools.models.category import Category
from shared.deadline import Deadline
from shared.klaviyo import KlaviyoClient
from shared.klaviyo.catalog_jobs import PollPolicy
from shared.log import get_logger
from shared.mapping.catalog_categories import category_attributes

log = get_logger("bulk.categories")

CATEGORY_EXPAND = ("ancestors[*]",)


class CategoriesExporter(CatalogExporter[Category, CatalogWrite]):
    kind: Kind = "categories"
    source = Source("categories", Category, "category", expand=CATEGORY_EXPAND)

    def __init__(self, ct: CommercetoolsClient, klaviyo: KlaviyoClient, *,
                 locale: str | None = None, page_size: int = MAX_LIMIT,
                 batch_size: int = MAX_LIMIT, delete_pages: int = 5,
                 poll: PollPolicy = PollPolicy(), sleep: Callable[[float], None] = time.sleep,
                 since: datetime | None = None) -> None:
        super().__init__(ct, klaviyo, page_size=page_size, batch_size=batch_size,
                         delete_pages=delete_pages, poll=poll, sleep=sleep, since=since)
        self.locale = locale

    def shape(self) -> Shape:
        return Shape(rows=self.batch_size)

    def map_record(self, record: Category, memo: dict[str, Any]) -> CatalogWrite:
        return CatalogWrite(record.id, record.id, category_attributes(record, self.locale))

    def send(self, rows: list[Row[CatalogWrite]], deadline: Deadline) -> Sent:
        writes = [r.payload for r in rows if r.payload is not None]
        if not writes:
            return Sent()
        existing = existing_ids(self.klaviyo, "category", [w.external_id for w in writes],
                                deadline=deadline)
        outcome = self.upsert("category", writes, existing=existing, deadline=deadline)
        return Sent([r.error for r in outcome.rejected], outcome.requests)

    def delete_batch(self, *, deadline: Deadline) -> BatchResult:
        listed, exhausted = list_catalog(self.klaviyo, "category", max_pages=self.delete_pages,
                                         deadline=deadline)
        tally = Tally()
        self.delete("category", listed, tally, deadline=deadline)
        result = tally.result(cursor=None, done=exhausted)
        log.info("categories deletion batch", read=result.read, sent=result.sent,
                 failed=result.failed, done=exhausted)
        return result
