"""Products → Klaviyo catalog items and their variants; unpublished or deleted → removed.

Deliveries are at-least-once, unordered and concurrent, so no handler trusts the message body:
each reads the product's current state from commercetools and makes Klaviyo match it, then
reads commercetools once more to confirm it did not move on meanwhile (`_converge`).
Destructive actions happen only when commercetools shows the product unpublished or gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shared.commercetools.client import predicate_string
from shared.commercetools.messages import CtMessage
from shared.commercetools.models.product import Product
from shared.errors import KlaviyoError
from shared.klaviyo.catalog import catalog_id
from shared.klaviyo.client import filter_string
from shared.log import get_logger
from shared.mapping.catalog import (
    CatalogConfig,
    item_attributes,
    split_variants,
    variant_attributes,
)
from shared.processors.base import Context
from shared.processors.catalog_objects import (
    MAX_STALE_REWRITES,
    StillChanging,
    external_id_of,
    item_variants,
    put,
    unchanged,
)
from shared.processors.variants import VariantWrite, write_variants

log = get_logger(__name__)

# The categories' own `ancestors` references give the ancestor ids for the item's categories.
PRODUCT_EXPAND = ("masterData.current.categories[*]",)

Json = dict[str, Any]


def sync_product(message: CtMessage, ctx: Context) -> int:
    """Write the product's current data, when commercetools shows it published.

    A product that is not published (any more) or gone is not written; if Klaviyo still holds
    an item or variants of it, they are removed. Its ProductUnpublished delivery does that too,
    but a write Klaviyo applied after we gave up on its answer (a timeout: the delivery failed
    and comes back) can land after that removal; this delivery's redelivery then finds it.
    Costs two Klaviyo reads, no write, when nothing is left over.
    """
    product_id = message.resource.id
    document = _read(ctx, product_id)
    if not _is_published(document):
        if not _left_in_klaviyo(ctx, product_id):
            log.info("product no longer exists; skipped" if document is None
                     else "product is not published; skipped", ctProductId=product_id)
            return 0
        log.info("product is not published but still in Klaviyo; removing it",
                 ctProductId=product_id)
    return _converge(ctx, product_id, document)


def _left_in_klaviyo(ctx: Context, product_id: str) -> bool:
    variants = ctx.klaviyo.iter_catalog_variants(_item_filter(product_id), deadline=ctx.deadline)
    return (next(iter(variants), None) is not None
            or ctx.klaviyo.get_catalog_item(product_id, deadline=ctx.deadline) is not None)


def _item_filter(product_id: str) -> str:
    """Klaviyo's filter for the variants of the product's item (by relationship, so also those
    of an item already deleted)."""
    return f"equals(item.id,{filter_string(catalog_id(product_id))})"


def remove_product(message: CtMessage, ctx: Context) -> int:
    """Delete the item and its variants, unless commercetools shows the product published.

    An old ProductUnpublished can arrive after a newer publish; deleting then would remove a
    live product (reference plugin bug).
    """
    product_id = message.resource.id
    # Read the flag straight from the document: a product that fails model validation must
    # still not block (or wrongly allow) the deletion decision.
    document = ctx.ct.get_product(product_id, deadline=ctx.deadline)
    if _is_published(document):
        log.info("product is published in commercetools; stale message, nothing deleted",
                 ctProductId=product_id)
        return 0
    return _converge(ctx, product_id, document)


def _converge(ctx: Context, product_id: str, document: Json | None) -> int:
    """Make Klaviyo match `document` (written if published, removed if not), then confirm
    commercetools still shows that state; if it moved on, make Klaviyo match the new one (at
    most MAX_STALE_REWRITES times, then the delivery is redelivered).

    Two deliveries for one product can overlap, and the one that read the older state may act
    last: a variant write still in flight lands after a concurrent unpublish removed the item,
    a removal lands after a republish was written, an item write with the old ancestors lands
    after a moved category's relink. Whichever delivery acts last confirms afterwards, so the
    last one to act has acted on commercetools' latest state. The published flag, the version
    and the categories' ancestors decide "moved on" (`_state`): a rename of an unpublished
    product changes nothing in Klaviyo.
    """
    writes = 0
    for _ in range(1 + MAX_STALE_REWRITES):
        item_lost = False
        refused: list[KlaviyoError] = []
        if _is_published(document):
            assert document is not None  # _is_published says so
            count, refused = _write_product(ctx, product_id, document)
            # A variant refused for its item ("does not exist"): a concurrent removal deleted
            # the item between our item write and the variant's. Not this variant's fault: the
            # next round writes the item and the variants again, or removes them, as
            # commercetools says then (another delivery may have re-created the item already).
            item_lost = any(map(_about_item, refused))
        else:
            count = _remove_item(ctx, product_id)
        writes += count
        # Expanded as the write reads it: the categories' ancestors are part of the state.
        latest = _read(ctx, product_id)
        if _state(latest) == _state(document) and not item_lost:
            if refused:
                raise refused[0]
            return writes
        log.info("product changed while it was written; writing its latest state",
                 ctProductId=product_id, written=_state_label(document),
                 latest=_state_label(latest))
        document = latest
    raise StillChanging(f"product changed during {MAX_STALE_REWRITES + 1} writes")


def _about_item(error: KlaviyoError) -> bool:
    pointers = [str((e.get("source") or {}).get("pointer") or "") for e in error.errors
                if isinstance(e, dict)]
    return any("/relationships/item" in pointer for pointer in pointers)


def _read(ctx: Context, product_id: str) -> Json | None:
    return ctx.ct.get_by_id("products", product_id, expand=PRODUCT_EXPAND,
                            deadline=ctx.deadline)


def _is_published(document: Json | None) -> bool:
    return document is not None and bool((document.get("masterData") or {}).get("published"))


def _state(document: Json | None) -> tuple[bool, Any, tuple[Any, ...]]:
    """What Klaviyo should hold: the published version with its categories' ancestors (a
    category moved meanwhile changes the item's links, though not the product's version), or
    nothing (unpublished or gone)."""
    if not _is_published(document):
        return (False, None, ())
    assert document is not None
    current = (document.get("masterData") or {}).get("current") or {}
    categories = tuple(
        (ref.get("id"), tuple(a.get("id") for a in (ref.get("obj") or {}).get("ancestors") or []
                              if isinstance(a, dict)))
        for ref in current.get("categories") or [] if isinstance(ref, dict))
    return (True, document.get("version"), categories)


def _state_label(document: Json | None) -> str:
    published, version, _ = _state(document)
    return f"published v{version}" if published else "not published"


def _write_product(ctx: Context, product_id: str, document: Json) -> tuple[int, list[KlaviyoError]]:
    """Upsert the item from the product's current data, then its variants; delete variants
    whose SKU the product no longer has. Returns the writes and the variants Klaviyo refused.

    The item is written first because Klaviyo rejects a variant whose item does not exist (the
    reference plugin sent both at once).
    """
    product = Product.model_validate(document)
    config = CatalogConfig.from_settings(ctx.settings)
    now = datetime.now(UTC)  # one instant, so item and variants pick the same prices
    attributes, relationships = item_attributes(product, config, now=now)
    created = put(ctx, "item", product_id, attributes, relationships, exists=True)

    # A new item has no variants yet: no need to list them.
    in_klaviyo = {} if created else item_variants(ctx, product_id)
    variants, without_sku = split_variants(product.master_data.current)
    if without_sku:
        log.warning("variants without SKU not sent", ctProductId=product_id,
                    variantIds=without_sku)
    changed: list[VariantWrite] = []
    skipped = 0
    for variant in variants:
        v_attributes, v_relationships = variant_attributes(product, variant, config, now=now)
        current = in_klaviyo.get(variant.sku or "")
        if current is not None and unchanged(current, v_attributes):
            skipped += 1
            continue
        changed.append(VariantWrite(variant.sku or "", v_attributes, v_relationships,
                                    exists=current is not None))
    wanted = {variant.sku for variant in variants}
    removed = [sku for sku in in_klaviyo if sku not in wanted]
    if removed:
        # A SKU moved to another product is that product's to move (its delivery re-creates the
        # variant under its item), whichever delivery comes first: not deleted here.
        moved = _skus_on_other_products(ctx, product_id, removed)
        removed = [sku for sku in removed if sku not in moved]

    outcome = write_variants(ctx, product_id, changed, removed)
    failures = outcome.refused
    log.info("product synced", ctProductId=product_id, itemCreated=created,
             variantsWritten=len(changed), variantsUnchanged=skipped,
             variantsDeleted=len(removed), variantJobs=outcome.jobs,
             variantsRetried=outcome.retried, variantsRefused=len(failures))
    return 1 + len(changed) + len(removed) - len(failures), failures


def _skus_on_other_products(ctx: Context, product_id: str, skus: Sequence[str]) -> set[str]:
    """Those of `skus` that another published product has now (two product-projections queries
    per 100 SKUs, master variant and other variants, made only when a product sync would delete
    variants)."""
    found: set[str] = set()
    wanted = set(skus)
    for start in range(0, len(skus), 100):
        quoted = ", ".join(predicate_string(sku) for sku in skus[start:start + 100])
        for field in ("masterVariant", "variants"):
            where = [f"id != {predicate_string(product_id)}", f"{field}(sku in ({quoted}))"]
            found |= _skus_found(ctx, where, wanted)
    return found


def _skus_found(ctx: Context, where: list[str], wanted: set[str]) -> set[str]:
    found: set[str] = set()
    for page in ctx.ct.iter_pages("product-projections", where=where, deadline=ctx.deadline):
        for doc in page:
            for variant in [doc.get("masterVariant") or {}, *(doc.get("variants") or [])]:
                if variant.get("sku") in wanted:
                    found.add(variant["sku"])
    return found


def _remove_item(ctx: Context, product_id: str) -> int:
    """Delete the product's variants, then its item (what is already gone counts as done).

    The variants are found by their item relationship (`GET /api/catalog-variants` filtered on
    `item.id`), not through the item: a variant created while a concurrent removal deleted the
    item outlives it, and Klaviyo no longer lists it under an item that is gone. Variants go
    first, so a crash in between leaves nothing the redelivery cannot find.
    """
    writes = 0
    skus = [external_id_of(v) for v in ctx.klaviyo.iter_catalog_variants(
        _item_filter(product_id), deadline=ctx.deadline)]
    for sku in skus:
        writes += int(ctx.klaviyo.delete_catalog_variant(sku, deadline=ctx.deadline))
    item_deleted = ctx.klaviyo.delete_catalog_item(product_id, deadline=ctx.deadline)
    writes += int(item_deleted)
    log.info("product removed", ctProductId=product_id, itemDeleted=item_deleted,
             variantsDeleted=writes - int(item_deleted))
    return writes
