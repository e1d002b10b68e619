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
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from shared.bulk.base import BatchResult, Kind, Tally
from shared.bulk.exporters._common import (
    CatalogWrite,
    ReadBudget,
    existing_ids,
    list_catalog,
    next_page,
    sorted_ids,
    upsert_phase,
)
from shared.commercetools.client import MAX_LIMIT, CommercetoolsClient
from shared.commercetools.models.category import Category
from shared.deadline import Deadline
from shared.klaviyo import KlaviyoClient
from shared.klaviyo.batches import RecordError
from shared.klaviyo.catalog_jobs import PollPolicy
from shared.log import get_logger
from shared.mapping.catalog_categories import category_attributes

log = get_logger("bulk.categories")

CATEGORY_EXPAND = ("ancestors[*]",)


class CategoriesExporter:
    kind: Kind = "categories"

    def __init__(
        self,
        ct: CommercetoolsClient,
        klaviyo: KlaviyoClient,
        *,
        locale: str | None = None,
        page_size: int = MAX_LIMIT,
        batch_size: int = MAX_LIMIT,
        delete_pages: int = 5,
        poll: PollPolicy = PollPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= page_size <= MAX_LIMIT:
            raise ValueError(f"page_size must be between 1 and {MAX_LIMIT}")
        self.ct = ct
        self.klaviyo = klaviyo
        self.locale = locale
        self.page_size = page_size
        self.batch_size = max(1, batch_size)
        self.delete_pages = max(1, delete_pages)
        self.poll = poll
        self.sleep = sleep

    def run_batch(
        self, *, after: str | None, ids: Sequence[str] | None, deadline: Deadline
    ) -> BatchResult:
        wanted = sorted_ids(ids)
        budget = ReadBudget(deadline)
        tally = Tally()
        writes: list[CatalogWrite] = []
        cursor, exhausted = after, False
        while True:
            limit = min(self.page_size, self.batch_size - tally.read)
            page = next_page(self.ct, "categories", after=cursor, ids=wanted, limit=limit,
                             expand=CATEGORY_EXPAND, deadline=deadline)
            cursor, exhausted = page.cursor, page.exhausted
            tally.not_found.extend(page.missing)
            tally.read += len(page.docs)
            for doc in page.docs:
                ct_id = str(doc.get("id"))
                try:
                    category = Category.model_validate(doc)
                except ValidationError:
                    log.warning("category document unreadable", ctCategoryId=ct_id)
                    tally.fail(RecordError(ct_id=ct_id, code="unreadable_document"))
                    continue
                try:
                    attributes = category_attributes(category, self.locale)
                except Exception as exc:  # noqa: BLE001 - one record's problem, not the job's
                    tally.fail_unexpected(ct_id, exc)
                    continue
                writes.append(CatalogWrite(ct_id, category.id, attributes))
            if exhausted or tally.read >= self.batch_size or not budget.more():
                break

        if writes:
            existing = existing_ids(self.klaviyo, "category", [w.external_id for w in writes],
                                    deadline=deadline)
            outcome = upsert_phase(self.klaviyo, "category", writes, existing,
                                   deadline=deadline, poll=self.poll, sleep=self.sleep)
            tally.fail_all(outcome.rejected)
        result = tally.result(cursor=cursor, done=exhausted)
        log.info("categories batch exported", read=result.read, sent=result.sent,
                 failed=result.failed, cursor=cursor, done=exhausted)
        return result

    def delete_batch(self, *, deadline: Deadline) -> BatchResult:
        listed, exhausted = list_catalog(self.klaviyo, "category", max_pages=self.delete_pages,
                                         deadline=deadline)
        tally = Tally()
        tally.read = len(listed)
        if listed:
            deletes = [(ext, ext) for ext in listed]
            outcome = upsert_phase(self.klaviyo, "category", [], set(), deletes=deletes,
                                   deadline=deadline, poll=self.poll, sleep=self.sleep)
            tally.fail_all(outcome.rejected)
        result = tally.result(cursor=None, done=exhausted)
        log.info("categories deletion batch", read=result.read, sent=result.sent,
                 failed=result.failed, done=exhausted)
        return result
