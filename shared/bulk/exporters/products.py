"""Published products → Klaviyo catalog items and variants through catalog bulk jobs (≤100).

A batch reads published products (`where masterData(published = true)`, categories expanded so
their ancestors are known, as in realtime) and then, in two phases:

1. items: one `any(ids,[...])` lookup per ≤100 products says which items exist; create jobs for
   the new ones and update jobs for the others start together and are waited for. Variants
   reference their item, so nothing of phase 2 starts before this is done.
2. variants: the variants of items that already existed are listed (every page: an item with
   more than 100 variants is read whole); SKUs Klaviyo has and the product no longer has get
   delete jobs, the others create or update jobs, all started together and waited for. A new
   item has no variants, so its variants are all created without a lookup.

Attributes come from `shared.mapping.catalog` (`item_attributes`, `variant_attributes`), as in
realtime. A product counts as sent when its item and every variant were written; a variant
without SKU cannot exist in Klaviyo and is left out (logged). A batch holds up to 500 products,
fewer if they have more than `max_variants` variants between them.

deleteAll: variants first (they reference items), then items, with bulk delete jobs; up to 5
listing pages per batch; done when both listings came back empty or were read to their end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.bulk.base import BatchResult, Kind, Tally
from shared.bulk.exporters._common import (
    CatalogExporter,
    CatalogWrite,
    existing_ids,
    external_id,
    list_catalog,
)
from shared.bulk.exporters.keyset import Doc, Row, Sent, Shape, Source
from shared.commercetools.client import MAX_LIMIT, CommercetoolsClient
from shared.commercetools.models.product import Product
from shared.deadline import Deadline
from shared.klaviyo import KlaviyoClient
from shared.klaviyo.batches import RecordError
from shared.klaviyo.catalog_jobs import PollPolicy
from shared.log import get_logger
from shared.mapping.catalog import (
    CatalogConfig,
    item_attributes,
    split_variants,
    variant_attributes,
)

log = get_logger("bulk.products")

PUBLISHED = "masterData(published = true)"
# The categories' own `ancestors` references give the ancestor ids for the item's categories.
PRODUCT_EXPAND = ("masterData.current.categories[*]",)


def _published(doc: Doc) -> bool:
    return bool((doc.get("masterData") or {}).get("published"))


@dataclass
class _Product:
    ct_id: str
    item: CatalogWrite
    variants: list[CatalogWrite] = field(default_factory=list)


class ProductsExporter(CatalogExporter[Product, _Product]):
    kind: Kind = "products"
    source = Source("products", Product, "product", expand=PRODUCT_EXPAND, where=(PUBLISHED,))

    def __init__(self, ct: CommercetoolsClient, klaviyo: KlaviyoClient, *,
                 config: CatalogConfig | None = None, page_size: int = MAX_LIMIT,
                 batch_size: int = MAX_LIMIT, max_variants: int = 10_000,
                 delete_pages: int = 5, poll: PollPolicy = PollPolicy(),
                 sleep: Callable[[float], None] = time.sleep,
                 since: datetime | None = None) -> None:
        super().__init__(ct, klaviyo, page_size=page_size, batch_size=batch_size,
                         delete_pages=delete_pages, poll=poll, sleep=sleep, since=since)
        self.config = config or CatalogConfig()
        self.max_variants = max(1, max_variants)

    # ---- sync -----------------------------------------------------------------------------------

    def shape(self) -> Shape:
        # Enough variants: the rest of the page is the next batch's.
        return Shape(units=self.max_variants, rows=self.batch_size)

    def keep(self, doc: Doc) -> bool:
        return _published(doc)

    def units(self, payload: _Product) -> int:
        return len(payload.variants)

    def map_record(self, record: Product, memo: dict[str, Any]) -> _Product:
        # One instant for the batch: items and variants pick the same prices.
        now: datetime = memo.setdefault("now", datetime.now(UTC))
        attributes, relationships = item_attributes(record, self.config, now=now)
        mapped = _Product(record.id, CatalogWrite(record.id, record.id, attributes,
                                                  relationships))
        with_sku, without_sku = split_variants(record.master_data.current)
        if without_sku:
            log.warning("variants without SKU not sent", ctProductId=record.id,
                        variantIds=without_sku)
        for variant in with_sku:
            v_attributes, v_relationships = variant_attributes(record, variant, self.config,
                                                               now=now)
            mapped.variants.append(
                CatalogWrite(record.id, variant.sku or "", v_attributes, v_relationships))
        return mapped

    def send(self, rows: list[Row[_Product]], deadline: Deadline) -> Sent:
        products = [r.payload for r in rows if r.payload is not None]
        if not products:
            return Sent()
        rejected: list[RecordError] = []
        requests = 0
        # Phase 1: items.
        items = [p.item for p in products]
        existing_items = existing_ids(self.klaviyo, "item", [w.external_id for w in items],
                                      deadline=deadline)
        outcome = self.upsert("item", items, existing=existing_items, deadline=deadline)
        rejected += [r.error for r in outcome.rejected]
        requests += outcome.requests
        written = {p.ct_id for p in products} - {e.ct_id for e in rejected}

        # Phase 2: variants of the items now in Klaviyo.
        existing_variants: set[str] = set()
        deletes: list[tuple[str, str]] = []
        writes: list[CatalogWrite] = []
        for product in products:
            if product.ct_id not in written:
                continue
            skus = {v.external_id for v in product.variants}
            if product.item.external_id in existing_items:
                in_klaviyo = [external_id(str(v.get("id", ""))) for v in
                              self.klaviyo.iter_item_variants(product.item.external_id,
                                                              deadline=deadline)]
                existing_variants.update(in_klaviyo)
                deletes.extend((product.ct_id, sku) for sku in in_klaviyo if sku not in skus)
            writes.extend(product.variants)
        if writes or deletes:
            outcome = self.upsert("variant", writes, deletes=deletes,
                                  existing=existing_variants, deadline=deadline)
            rejected += [r.error for r in outcome.rejected]
            requests += outcome.requests
        return Sent(rejected, requests, {"variants": sum(len(p.variants) for p in products)})

    # ---- deleteAll ------------------------------------------------------------------------------

    def delete_batch(self, *, deadline: Deadline) -> BatchResult:
        tally = Tally()
        variants, variants_done = list_catalog(self.klaviyo, "variant",
                                               max_pages=self.delete_pages, deadline=deadline)
        if variants:
            self.delete("variant", variants, tally, deadline=deadline)
            if not variants_done:
                return self._deleted(tally, done=False)
        items, items_done = list_catalog(self.klaviyo, "item", max_pages=self.delete_pages,
                                         deadline=deadline)
        self.delete("item", items, tally, deadline=deadline)
        return self._deleted(tally, done=items_done)

    @staticmethod
    def _deleted(tally: Tally, *, done: bool) -> BatchResult:
        result = tally.result(cursor=None, done=done)
        log.info("products deletion batch", read=result.read, sent=result.sent,
                 failed=result.failed, done=done)
        return result
