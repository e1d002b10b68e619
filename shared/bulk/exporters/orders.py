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

A batch reads pages until it holds ~10 requests' worth of events. Each request is sent as soon as
its 1,000 events are mapped, up to `in_flight` at once, while the next page is read (keyset.py);
a request holds whole orders only (≤1,000 events), except at the end of the orders, where the
rest is sent in requests of exactly 1,000. Unless the orders ran out, the batch hands the orders
of a last, partly filled request back (the cursor stops before them), so every request it sends
is full and requests per 1,000 events stay at the minimum.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shared.bulk.base import Kind
from shared.bulk.exporters.keyset import KeysetExporter, Row, Sent, Shape, Source
from shared.commercetools.client import MAX_LIMIT, CommercetoolsClient
from shared.commercetools.models.order import Order
from shared.commercetools.product_reads import get_products_with_categories
from shared.deadline import Deadline
from shared.klaviyo import MAX_BULK_EVENTS, KlaviyoClient
from shared.klaviyo.batches import EventRecord, dedupe_events, send_events
from shared.log import get_logger
from shared.mapping.events import KlaviyoEvent
from shared.mapping.orders import OrderMappingConfig, expanded_payments, order_events
from shared.mapping.products import ProductInfo, product_ids, product_lookup

log = get_logger("bulk.orders")

# The realtime function's expansions (the discount codes' `code`) plus the payments: the same
# order document maps to the same events either way.
ORDER_EXPAND = ("paymentInfo.payments[*]", "discountCodes[*].discountCode")


class OrdersExporter(KeysetExporter[Order, list[KlaviyoEvent]]):
    kind: Kind = "orders"
    source = Source("orders", Order, "order", expand=ORDER_EXPAND)
    hand_back_partial = True
    whole_tail = True

    def __init__(
        self,
        ct: CommercetoolsClient,
        klaviyo: KlaviyoClient,
        *,
        config: OrderMappingConfig | None = None,
        page_size: int = MAX_LIMIT,
        requests_per_batch: int = 10,
        backfill: bool = True,
        since: datetime | None = None,
        in_flight: int = 2,
    ) -> None:
        # Two requests in flight: event-bulk-create-jobs takes concurrent POSTs, and the next
        # one then waits for its budget slot while the last is still being answered.
        super().__init__(ct, klaviyo, page_size=page_size, since=since, in_flight=in_flight)
        if requests_per_batch < 1:
            raise ValueError("requests_per_batch must be at least 1")
        self.config = config or OrderMappingConfig()
        self.target_events = requests_per_batch * MAX_BULK_EVENTS
        self.backfill = backfill

    def shape(self) -> Shape:
        return Shape(units=MAX_BULK_EVENTS)

    def batch_shape(self) -> Shape:
        return Shape(units=self.target_events)

    def units(self, payload: list[KlaviyoEvent]) -> int:
        return len(payload)

    def prepare(self, records: list[Order], memo: dict[str, Any], *,
                deadline: Deadline) -> None:
        """ProductInfo (breadcrumbs, slug, key) of every product these orders name that the
        batch has not looked up yet (`memo`): one products query, categories expanded."""
        products: dict[str, ProductInfo] = memo
        wanted = list(dict.fromkeys(pid for o in records for pid in product_ids(o)
                                    if pid not in products))
        if not wanted:
            return
        # Categories and their ancestors come expanded, as in the realtime order events.
        docs = get_products_with_categories(self.ct, wanted, deadline=deadline)
        products.update(product_lookup(docs, locale=self.config.locale))
        for pid in wanted:  # deleted products: remember they are gone
            products.setdefault(pid, ProductInfo())

    def map_record(self, record: Order, memo: dict[str, Any]) -> list[KlaviyoEvent] | None:
        try:
            payments = expanded_payments(record)
        except ValidationError:
            log.warning("order payment unreadable; refunds left out", ctOrderId=record.id)
            payments = []
        # None (no email and no customer id, or nothing to record): skipped
        return order_events(record, payments, memo, self.config) or None

    def send(self, rows: list[Row[list[KlaviyoEvent]]], deadline: Deadline) -> Sent:
        records = [EventRecord(row.ct_id, event) for row in rows for event in row.payload or ()]
        # Klaviyo fails a whole request for a repeated unique_id (and keeps only the first).
        records, dropped = dedupe_events(records)
        if dropped:
            log.warning("events with a repeated unique_id left out of the batch",
                        count=len(dropped), ctOrderIds=sorted({r.ct_id for r in dropped})[:20])
        outcome = send_events(self.klaviyo, records, deadline=deadline, backfill=self.backfill)
        return Sent([r.error for r in outcome.rejected], outcome.requests,
                    {"events": len(outcome.sent)})
