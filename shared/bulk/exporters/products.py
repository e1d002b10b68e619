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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from shared.bulk.base import BatchResult, Kind, Tally
from shared.bulk.exporters._common import (
    CatalogWrite,
    Doc,
    ReadBudget,
    existing_ids,
    external_id,
    list_catalog,
    next_page,
    sorted_ids,
    upsert_phase,
)
from shared.commercetools.client import MAX_LIMIT, CommercetoolsClient
from shared.commercetools.models.product import Product
from shared.deadline import Deadline
from shared.errors import ConnectorError
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


class ProductsExporter:
    kind: Kind = "products"

    def __init__(
        self,
        ct: CommercetoolsClient,
        klaviyo: KlaviyoClient,
        *,
        config: CatalogConfig | None = None,
        page_size: int = MAX_LIMIT,
        batch_size: int = MAX_LIMIT,
        max_variants: int = 10_000,
        delete_pages: int = 5,
        poll: PollPolicy = PollPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= page_size <= MAX_LIMIT:
            raise ValueError(f"page_size must be between 1 and {MAX_LIMIT}")
        self.ct = ct
        self.klaviyo = klaviyo
        self.config = config or CatalogConfig()
        self.page_size = page_size
        self.batch_size = max(1, batch_size)
        self.max_variants = max(1, max_variants)
        self.delete_pages = max(1, delete_pages)
        self.poll = poll
        self.sleep = sleep

    # ---- sync -----------------------------------------------------------------------------------

    def run_batch(
        self, *, after: str | None, ids: Sequence[str] | None, deadline: Deadline
    ) -> BatchResult:
        wanted = sorted_ids(ids)
        budget = ReadBudget(deadline)
        now = datetime.now(UTC)  # one instant: items and variants pick the same prices
        tally = Tally()
        products: list[_Product] = []
        variants = 0
        cursor, exhausted, full = after, False, False
        while not full:
            limit = min(self.page_size, self.batch_size - tally.read)
            before = cursor
            page = next_page(self.ct, "products", after=cursor, ids=wanted, limit=limit,
                             where=(PUBLISHED,), expand=PRODUCT_EXPAND, keep=_published,
                             deadline=deadline)
            cursor, exhausted = page.cursor, page.exhausted
            tally.not_found.extend(page.missing)
            for position, doc in enumerate(page.docs):
                try:
                    mapped, error = self._map(doc, now)
                except ConnectorError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one record's problem, not the job's
                    mapped, error = None, None
                    tally.fail_unexpected(str(doc.get("id")), exc)
                count = len(mapped.variants) if mapped else 0
                if tally.read and variants + count > self.max_variants:
                    # Enough variants: the rest of the page is the next batch's.
                    cursor = str(page.docs[position - 1]["id"]) if position else before
                    exhausted, full = False, True
                    break
                tally.read += 1
                variants += count
                if error is not None:
                    tally.fail(error)
                if mapped is not None:
                    products.append(mapped)
            if exhausted or tally.read >= self.batch_size or not budget.more():
                break

        if products:
            self._sync(products, tally, deadline)
        result = tally.result(cursor=cursor, done=exhausted)
        log.info("products batch exported", read=result.read, sent=result.sent,
                 failed=result.failed, variants=variants, cursor=cursor, done=exhausted)
        return result

    def _map(self, doc: Doc, now: datetime) -> tuple[_Product | None, RecordError | None]:
        ct_id = str(doc.get("id"))
        try:
            product = Product.model_validate(doc)
        except ValidationError:
            log.warning("product document unreadable", ctProductId=ct_id)
            return None, RecordError(ct_id=ct_id, code="unreadable_document")
        attributes, relationships = item_attributes(product, self.config, now=now)
        mapped = _Product(ct_id, CatalogWrite(ct_id, product.id, attributes, relationships))
        with_sku, without_sku = split_variants(product.master_data.current)
        if without_sku:
            log.warning("variants without SKU not sent", ctProductId=ct_id,
                        variantIds=without_sku)
        for variant in with_sku:
            v_attributes, v_relationships = variant_attributes(product, variant, self.config,
                                                               now=now)
            mapped.variants.append(
                CatalogWrite(ct_id, variant.sku or "", v_attributes, v_relationships))
        return mapped, None

    def _sync(self, products: list[_Product], tally: Tally, deadline: Deadline) -> None:
        # Phase 1: items.
        items = [p.item for p in products]
        existing_items = existing_ids(self.klaviyo, "item", [w.external_id for w in items],
                                      deadline=deadline)
        outcome = upsert_phase(self.klaviyo, "item", items, existing_items, deadline=deadline,
                               poll=self.poll, sleep=self.sleep)
        tally.fail_all(outcome.rejected)
        written = {p.ct_id for p in products} - {r.error.ct_id for r in outcome.rejected}

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
            outcome = upsert_phase(self.klaviyo, "variant", writes, existing_variants,
                                   deletes=deletes, deadline=deadline, poll=self.poll,
                                   sleep=self.sleep)
            tally.fail_all(outcome.rejected)

    # ---- deleteAll ------------------------------------------------------------------------------

    def delete_batch(self, *, deadline: Deadline) -> BatchResult:
        tally = Tally()
        variants, variants_done = list_catalog(self.klaviyo, "variant",
                                               max_pages=self.delete_pages, deadline=deadline)
        if variants:
            self._delete("variant", variants, tally, deadline)
            if not variants_done:
                return self._deleted(tally, done=False)
        items, items_done = list_catalog(self.klaviyo, "item", max_pages=self.delete_pages,
                                         deadline=deadline)
        if items:
            self._delete("item", items, tally, deadline)
        return self._deleted(tally, done=items_done)

    def _delete(self, kind: str, external_ids: list[str], tally: Tally,
                deadline: Deadline) -> None:
        tally.read += len(external_ids)
        outcome = upsert_phase(self.klaviyo, kind, [], set(),  # type: ignore[arg-type]
                               deletes=[(ext, ext) for ext in external_ids], deadline=deadline,
                               poll=self.poll, sleep=self.sleep)
        tally.fail_all(outcome.rejected)

    @staticmethod
    def _deleted(tally: Tally, *, done: bool) -> BatchResult:
        result = tally.result(cursor=None, done=done)
        log.info("products deletion batch", read=result.read, sent=result.sent,
                 failed=result.failed, done=done)
        return result
