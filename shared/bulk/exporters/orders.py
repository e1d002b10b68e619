"""Orders → Klaviyo events through event-bulk-create-jobs (≤1,000 events a request).

Every order yields what `shared.mapping.orders.order_events` says its current state implies —
Placed Order, one Ordered Product per line, Fulfilled/Cancelled Order by state, one Refunded Order
per successful refund — with the realtime function's unique_ids, so nothing is recorded twice.
All events carry `backfill: true`: historical orders must not trigger flows.

Per CT page the I/O is fixed, never per order: the page itself is read with
`expand=paymentInfo.payments[*]` (the payments come with it: no extra request) and the discount
codes expanded as the realtime function reads them, and the ordered products with their
categories and the categories' ancestors expanded in one `id in (...)` query (split only where
the URL would get too long; products seen earlier in the batch are not fetched again).

A batch reads pages until it holds ~10 requests' worth of events; then, unless the orders ran
out, it hands the orders of a last, partly filled request back (the cursor stops before them),
so every request it sends is full and requests per 1,000 events stay at the minimum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from shared.bulk.base import BatchResult, Kind, Tally
from shared.bulk.exporters._common import Doc, ReadBudget, next_page, sorted_ids
from shared.commercetools.client import MAX_LIMIT, CommercetoolsClient
from shared.commercetools.models.order import Order
from shared.commercetools.product_reads import get_products_with_categories
from shared.deadline import Deadline
from shared.klaviyo import MAX_BULK_EVENTS, KlaviyoClient
from shared.klaviyo.batches import EventRecord, RecordError, dedupe_events, send_events
from shared.log import get_logger
from shared.mapping.events import KlaviyoEvent
from shared.mapping.orders import OrderMappingConfig, expanded_payments, order_events
from shared.mapping.products import ProductInfo, product_ids, product_lookup

log = get_logger("bulk.orders")

# The realtime function's expansions (the discount codes' `code`) plus the payments: the same
# order document maps to the same events either way.
ORDER_EXPAND = ("paymentInfo.payments[*]", "discountCodes[*].discountCode")


@dataclass
class _Row:
    ct_id: str
    events: list[KlaviyoEvent] | None  # None: skipped (no email and no customer id)
    error: RecordError | None = None


class OrdersExporter:
    kind: Kind = "orders"

    def __init__(
        self,
        ct: CommercetoolsClient,
        klaviyo: KlaviyoClient,
        *,
        config: OrderMappingConfig | None = None,
        page_size: int = MAX_LIMIT,
        requests_per_batch: int = 10,
        backfill: bool = True,
    ) -> None:
        if not 1 <= page_size <= MAX_LIMIT:
            raise ValueError(f"page_size must be between 1 and {MAX_LIMIT}")
        if requests_per_batch < 1:
            raise ValueError("requests_per_batch must be at least 1")
        self.ct = ct
        self.klaviyo = klaviyo
        self.config = config or OrderMappingConfig()
        self.page_size = page_size
        self.target_events = requests_per_batch * MAX_BULK_EVENTS
        self.backfill = backfill

    def run_batch(
        self, *, after: str | None, ids: Sequence[str] | None, deadline: Deadline,
        through: str | None = None,
    ) -> BatchResult:
        wanted = sorted_ids(ids)
        budget = ReadBudget(deadline)
        products: dict[str, ProductInfo] = {}
        rows: list[_Row] = []
        missing: list[str] = []
        total = 0
        cursor, exhausted = after, False
        while True:
            page = next_page(self.ct, "orders", after=cursor, ids=wanted, limit=self.page_size,
                             expand=ORDER_EXPAND, deadline=deadline, through=through)
            cursor, exhausted = page.cursor, page.exhausted
            missing.extend(page.missing)
            for row in self._map_page(page.docs, products, deadline):
                rows.append(row)
                total += len(row.events or ())
            if exhausted or total >= self.target_events or not budget.more():
                break

        if not exhausted:
            rows, cursor = self._fill_requests(rows, cursor)

        tally = Tally()
        tally.read = len(rows)
        tally.not_found = missing
        records: list[EventRecord] = []
        for row in rows:
            if row.error is not None:
                tally.fail(row.error)
            elif not row.events:
                tally.skip(row.ct_id)
            else:
                records.extend(EventRecord(row.ct_id, event) for event in row.events)
        records, dropped = dedupe_events(records)
        if dropped:
            log.warning("events with a repeated unique_id left out of the batch",
                        count=len(dropped), ctOrderIds=sorted({r.ct_id for r in dropped})[:20])
        outcome = send_events(self.klaviyo, records, deadline=deadline, backfill=self.backfill)
        tally.fail_all(outcome.rejected)
        result = tally.result(cursor=cursor, done=exhausted)
        log.info("orders batch exported", read=result.read, sent=result.sent,
                 skipped=result.skipped, failed=result.failed, events=len(outcome.sent),
                 requests=outcome.requests, cursor=cursor, done=exhausted)
        return result

    @staticmethod
    def _fill_requests(rows: list[_Row], cursor: str | None) -> tuple[list[_Row], str | None]:
        """Drop the trailing orders whose events would only part-fill a last request (they are
        read again by the next batch), keeping at least one order."""
        total = sum(len(r.events or ()) for r in rows)
        full = (total // MAX_BULK_EVENTS) * MAX_BULK_EVENTS
        if not rows or total == full or full == 0:
            return rows, cursor
        kept, count = 0, 0
        for row in rows:
            n = len(row.events or ())
            if count + n > full:
                break
            count += n
            kept += 1
        kept = max(kept, 1)
        return rows[:kept], rows[kept - 1].ct_id

    def _map_page(
        self, docs: list[Doc], products: dict[str, ProductInfo], deadline: Deadline,
    ) -> list[_Row]:
        orders: list[tuple[str, Order | None]] = []
        for doc in docs:
            ct_id = str(doc.get("id"))
            try:
                orders.append((ct_id, Order.model_validate(doc)))
            except ValidationError:
                log.warning("order document unreadable", ctOrderId=ct_id)
                orders.append((ct_id, None))
        self._load_products([o for _, o in orders if o is not None], products, deadline)
        rows = []
        for ct_id, order in orders:
            if order is None:
                rows.append(_Row(ct_id, None, RecordError(ct_id=ct_id,
                                                          code="unreadable_document")))
                continue
            try:
                payments = expanded_payments(order)
            except ValidationError:
                log.warning("order payment unreadable; refunds left out", ctOrderId=ct_id)
                payments = []
            try:
                events = order_events(order, payments, products, self.config)
            except Exception as exc:  # noqa: BLE001 - one record's problem, not the job's
                log.error("record could not be mapped; reported as a record error",
                          ctId=ct_id, error=type(exc).__name__)
                rows.append(_Row(ct_id, None, RecordError(
                    ct_id=ct_id, code=f"unexpected_{type(exc).__name__}")))
                continue
            rows.append(_Row(ct_id, events or None))
        return rows

    def _load_products(
        self, orders: list[Order], products: dict[str, ProductInfo], deadline: Deadline,
    ) -> None:
        """ProductInfo (breadcrumbs, slug, key) of every product these orders name that the
        batch has not looked up yet: one products query, categories expanded."""
        wanted = list(dict.fromkeys(pid for o in orders for pid in product_ids(o)
                                    if pid not in products))
        if not wanted:
            return
        # Categories and their ancestors come expanded, as in the realtime order events.
        docs = get_products_with_categories(self.ct, wanted, deadline=deadline)
        products.update(product_lookup(docs, locale=self.config.locale))
        for pid in wanted:  # deleted products: remember they are gone
            products.setdefault(pid, ProductInfo())

    def delete_batch(self, *, deadline: Deadline) -> BatchResult:
        raise NotImplementedError("deleting order events is not supported")
