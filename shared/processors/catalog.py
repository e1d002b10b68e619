"""Catalog: categories, products (Klaviyo items + variants) and stock → Klaviyo catalog writes.

Deliveries are at-least-once and unordered, so no handler trusts the message body: each reads
the resource's current state from commercetools and makes Klaviyo match it. A late or repeated
message therefore rewrites the same data, and destructive actions (deleting an item) happen only
when commercetools confirms the product is unpublished or gone. Every write is idempotent
(update-or-create by external id, delete where 404 means done), so a redelivery after a partial
failure is safe.

Processor names (for DISABLED_PROCESSORS), triggers and Klaviyo writes:

  CategoryCreated          message CategoryCreated           upsert category + descendants' names
  CategoryResourceUpdated  changes ResourceCreated/-Updated  same
  CategoryResourceDeleted  change ResourceDeleted            delete category
  ProductPublished         message ProductPublished          upsert item, then its variants
  ProductResourceUpdated   changes ResourceCreated/-Updated  same, when published
  ProductUnpublished       message ProductUnpublished        delete variants, then the item, when
  ProductDeleted           message ProductDeleted            commercetools shows the product
  ProductResourceDeleted   change ResourceDeleted            unpublished or gone
  InventoryChanged         inventory-entry messages InventoryEntryCreated/-QuantitySet/-Deleted
                           and changes ResourceCreated/-Updated/-Deleted:
                           the variant's inventory_quantity

A product's variant creates, updates and deletes go as catalog variant bulk jobs once there are
3 of a kind (BULK_MIN_VARIANTS), as single requests below that.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from shared.commercetools.client import predicate_string
from shared.commercetools.messages import CtMessage
from shared.commercetools.models.category import Category
from shared.commercetools.models.inventory import InventoryEntry
from shared.commercetools.models.product import Product
from shared.config import Settings
from shared.errors import KlaviyoError, RetryableError
from shared.klaviyo.batches import Rejected
from shared.klaviyo.bulk import CatalogOp
from shared.klaviyo.catalog import CATALOG_ID_PREFIX, CatalogKind, catalog_id, catalog_resource
from shared.klaviyo.catalog_jobs import CatalogJob, CatalogRecord, job_outcome, submit_catalog_jobs
from shared.klaviyo.client import filter_string
from shared.log import get_logger
from shared.mapping.catalog import (
    CatalogConfig,
    item_attributes,
    split_variants,
    variant_attributes,
)
from shared.mapping.catalog_categories import category_attributes
from shared.mapping.catalog_stock import inventory_quantity
from shared.processors.base import Context, Processor, Trigger

log = get_logger(__name__)

CATEGORY_EXPAND = ("ancestors[*]",)
# The categories' own `ancestors` references give the ancestor ids for the item's categories.
PRODUCT_EXPAND = ("masterData.current.categories[*]",)
# Ids per `any(ids,[...])` filter: each compound id is ~60 characters, keep URLs short.
_IDS_PER_FILTER = 50

INVENTORY_MESSAGES = frozenset(
    {"InventoryEntryCreated", "InventoryEntryQuantitySet", "InventoryEntryDeleted"}
)
CREATED_OR_UPDATED = frozenset({"ResourceCreated", "ResourceUpdated"})
DELETED = frozenset({"ResourceDeleted"})

# A product sync sends its variant creates, updates and deletes as catalog variant bulk jobs
# (≤100 variants each) once there are this many of one kind; fewer go one request each. A job
# costs one POST plus its polls, from the same 75/s, 700/min budget as single writes: from 3
# variants on it costs about as many requests as single calls, and far fewer as the count grows
# (10 or 100 variants: a POST and a few polls instead of 10 or 100 requests). Below that,
# single calls cost no more and need no waiting.
BULK_MIN_VARIANTS = 3
# Polling a realtime variant job: the first poll right after it was started, then after 0.5 s,
# each wait 1.5 times the previous, at most 4 s. While a job runs the delivery holds an instance
# (billed, and counting against its concurrency) and the product change is not in Klaviyo yet,
# and a job of ≤100 variants is expected to take seconds, not minutes: so the first waits are
# short. The backoff keeps a job that sits in Klaviyo's queue from spending the shared catalog
# budget: at most 15 polls a minute once at 4 s, 16 in all within the default 50 s deadline.
# Jobs are waited for in the order they were started (Klaviyo works through them roughly in that
# order), each with its own backoff, so later jobs usually answer `complete` at their first poll.
JOB_POLL_FIRST = 0.5
JOB_POLL_BACKOFF = 1.5
JOB_POLL_MAX = 4.0


# Re-writes after the version moved during a write, before the delivery is redelivered instead.
MAX_STALE_REWRITES = 2


class StillChanging(RetryableError):
    """The resource kept changing while it was written: the redelivery writes its final state."""


# -- Klaviyo helpers -----------------------------------------------------------------------------


def _external_id(resource: dict[str, Any]) -> str:
    external = (resource.get("attributes") or {}).get("external_id")
    if external:
        return str(external)
    return str(resource.get("id", "")).removeprefix(CATALOG_ID_PREFIX)


def _put(
    ctx: Context, kind: CatalogKind, external_id: str, attributes: dict[str, Any],
    relationships: dict[str, Any] | None, *, exists: bool,
) -> bool:
    """Update or create one catalog object, starting with what is likely; True if created.

    `exists` is only a hint: a 404 on update falls back to create, and a 409 on create (another
    instance was faster) falls back to update, so the outcome never depends on it.
    """
    klaviyo, deadline = ctx.klaviyo, ctx.deadline
    if exists:
        try:
            klaviyo.update_catalog_object(kind, external_id, attributes, relationships,
                                          deadline=deadline)
            return False
        except KlaviyoError as exc:
            if exc.status != 404:
                raise
    try:
        klaviyo.create_catalog_object(kind, external_id, attributes, relationships,
                                      deadline=deadline)
        return True
    except KlaviyoError as exc:
        if exc.status != 409:
            raise
    if kind == "variant" and not _variant_of_item(ctx, external_id, relationships):
        # The SKU is a variant of another item: it moved between products in commercetools.
        # An update cannot change a variant's item, so it is re-created under this one.
        klaviyo.delete_catalog_object("variant", external_id, deadline=deadline)
        klaviyo.create_catalog_object(kind, external_id, attributes, relationships,
                                      deadline=deadline)
        return True
    klaviyo.update_catalog_object(kind, external_id, attributes, relationships, deadline=deadline)
    return False


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _klaviyo_category_names(ctx: Context, external_ids: list[str]) -> dict[str, str]:
    """Current Klaviyo names of those categories that exist (external id → name)."""
    names: dict[str, str] = {}
    for chunk in _chunks(external_ids, _IDS_PER_FILTER):
        ids = ",".join(filter_string(catalog_id(external)) for external in chunk)
        for resource in ctx.klaviyo.iter_catalog_categories(f"any(ids,[{ids}])",
                                                            deadline=ctx.deadline):
            name = (resource.get("attributes") or {}).get("name")
            if isinstance(name, str):
                names[_external_id(resource)] = name
    return names


def _item_variants(ctx: Context, product_id: str) -> dict[str, dict[str, Any]]:
    """The item's variants in Klaviyo (SKU → attributes), all pages (> 100 variants work)."""
    return {_external_id(v): v.get("attributes") or {}
            for v in ctx.klaviyo.iter_item_variants(product_id, deadline=ctx.deadline)}


# Set when an object is created and never returned or changed by an update.
_CREATE_ONLY = frozenset({"external_id", "integration_type", "catalog_type"})


def _unchanged(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Klaviyo already holds every value we would write.

    Skipping such writes is what lets a product with more variants than one delivery can write
    (Klaviyo allows ~700 catalog writes a minute) finish over redeliveries: each delivery only
    writes what the previous ones did not.
    """
    return all(current.get(key) == value for key, value in wanted.items()
               if key not in _CREATE_ONLY)


_VARIANT_OPS: tuple[CatalogOp, ...] = ("create", "update", "delete")


@dataclass(frozen=True)
class _VariantWrite:
    sku: str
    attributes: dict[str, Any]
    relationships: dict[str, Any] | None
    exists: bool  # Klaviyo lists it for the item: an update, else a create

    @property
    def op(self) -> CatalogOp:
        return "update" if self.exists else "create"


def _variant_of_item(ctx: Context, sku: str, relationships: dict[str, Any] | None) -> bool:
    """Whether the existing variant `sku` is one of its item's (a create that lost a race with
    another delivery of the same product), rather than another item's (a SKU that moved)."""
    item = (((relationships or {}).get("item") or {}).get("data") or {}).get("id")
    if not item:
        return True
    variants = ctx.klaviyo.iter_item_variants(str(item).removeprefix(CATALOG_ID_PREFIX),
                                              deadline=ctx.deadline)
    return any(_external_id(v) == sku for v in variants)


def _write_variants_singly(
    ctx: Context, product_id: str, writes: Sequence[_VariantWrite], deletes: Sequence[str],
) -> list[KlaviyoError]:
    """One request per variant (`_put`; delete where 404 means done).

    A terminal refusal of one variant does not stop the others: it is logged and returned, and
    the caller raises the first once every variant was tried. Retryable errors raise at once
    (the redelivery writes only what is still missing).
    """
    refused: list[KlaviyoError] = []

    def attempt(sku: str, write: Any) -> None:
        try:
            write()
        except KlaviyoError as exc:
            if exc.retryable:
                raise
            log.warning("variant refused by Klaviyo", ctProductId=product_id, sku=sku,
                        **exc.log_fields())
            refused.append(exc)

    for w in writes:
        attempt(w.sku, partial(_put, ctx, "variant", w.sku, w.attributes, w.relationships,
                               exists=w.exists))
    for sku in deletes:
        attempt(sku, partial(ctx.klaviyo.delete_catalog_variant, sku, deadline=ctx.deadline))
    return refused


def _start_variant_jobs(
    ctx: Context, op: CatalogOp, records: list[CatalogRecord],
) -> tuple[list[CatalogJob], list[Rejected[CatalogRecord]]]:
    """Variant bulk jobs of ≤100 records; records Klaviyo refused a job for are isolated (the
    rest still go) and returned for a retry one by one."""
    jobs, submitted = submit_catalog_jobs(ctx.klaviyo, "variant", op, records,
                                          deadline=ctx.deadline)
    return jobs, submitted.rejected


def _wait_for_variant_jobs(
    ctx: Context, jobs: list[CatalogJob],
) -> list[Rejected[CatalogRecord]]:
    """Poll each job until it is done (DeadlineExceeded if the deadline comes first); the
    records the finished jobs report as failed, or cannot vouch for (a cancelled job, a failure
    count without errors naming the records)."""
    klaviyo = ctx.klaviyo
    for job in jobs:
        job.attributes = klaviyo.wait_for_job(
            partial(klaviyo.get_catalog_bulk_job, "variant", job.op), job.job_id,
            deadline=ctx.deadline, poll_interval=JOB_POLL_FIRST, backoff=JOB_POLL_BACKOFF,
            max_interval=JOB_POLL_MAX,
        )
    return job_outcome(jobs).rejected


# -- categories ----------------------------------------------------------------------------------


def sync_category(message: CtMessage, ctx: Context) -> int:
    """Make the category and every descendant carry their current breadcrumb name.

    A change notification does not say what changed, and a breadcrumb depends on every ancestor,
    so after any change the subtree's names are recomputed and compared with Klaviyo's: only
    differing (or missing) ones are written. A rename or move thus reaches all descendants, a
    redelivery after a partial failure finishes the job, and an unrelated change (description,
    order hint) costs no write.
    """
    category_id = message.resource.id
    # One query for the category and its subtree (it was a read by id, then this query).
    quoted = predicate_string(category_id)
    pages = ctx.ct.iter_pages(
        "categories", where=[f"id = {quoted} or ancestors(id = {quoted})"],
        expand=CATEGORY_EXPAND, deadline=ctx.deadline,
    )
    subtree = [Category.model_validate(doc) for page in pages for doc in page]
    own = next((c for c in subtree if c.id == category_id), None)
    if own is None:
        log.info("category no longer exists; skipped", ctCategoryId=category_id)
        return 0
    # Parents before children, so a partial failure leaves the upper levels right.
    categories = [own] + sorted((c for c in subtree if c.id != category_id),
                                key=lambda c: len(c.ancestors))

    locale = ctx.settings.preferred_locale
    wanted = {c.id: category_attributes(c, locale) for c in categories}
    current = _klaviyo_category_names(ctx, list(wanted))
    writes = 0
    for external_id, attributes in wanted.items():
        if current.get(external_id) == attributes["name"]:
            continue
        _put(ctx, "category", external_id, attributes, None, exists=external_id in current)
        writes += 1
    log.info("category synced", ctCategoryId=category_id, descendants=len(categories) - 1,
             categoriesWritten=writes)
    return writes


def delete_category(message: CtMessage, ctx: Context) -> int:
    """Category ids are never reused, so a deletion needs no re-check; 404 = already gone."""
    deleted = ctx.klaviyo.delete_catalog_category(message.resource.id, deadline=ctx.deadline)
    if not deleted:
        log.info("category was not in Klaviyo", ctCategoryId=message.resource.id)
    return int(deleted)


# -- products ------------------------------------------------------------------------------------


def sync_product(message: CtMessage, ctx: Context) -> int:
    """Write the product's current data (`_write_product`), then confirm commercetools did not
    move on meanwhile.

    Two deliveries for one product can overlap, and the one that read the older version may
    write last. So after the writes the product is read again: a newer version is written again
    (at most MAX_STALE_REWRITES times, then the delivery is redelivered); a product that is no
    longer published (or gone) has its item and variants removed, so a create that raced an
    unpublish does not leave a resurrected item behind.
    """
    product_id = message.resource.id
    writes = 0
    for _ in range(1 + MAX_STALE_REWRITES):
        count, written = _write_product(ctx, product_id)
        writes += count
        if written is None:  # nothing to write: gone or not published, as commercetools says
            return writes
        latest = ctx.ct.get_product(product_id, deadline=ctx.deadline)
        if latest is None or not (latest.get("masterData") or {}).get("published"):
            log.info("product unpublished while it was written; removing it again",
                     ctProductId=product_id)
            return writes + _remove_item(ctx, product_id)
        if latest.get("version") == written:
            return writes
        log.info("product changed while it was written; writing its latest state",
                 ctProductId=product_id, writtenVersion=written,
                 latestVersion=latest.get("version"))
    raise StillChanging(f"product changed during {MAX_STALE_REWRITES + 1} writes")


def _write_product(ctx: Context, product_id: str) -> tuple[int, int | None]:
    """Upsert the item from the product's current data, then its variants; delete variants
    whose SKU the product no longer has. Returns the writes and the product version written
    (None: nothing written).

    The item is written first because Klaviyo rejects a variant whose item does not exist (the
    reference plugin sent both at once). A product that is not published (any more) is left
    alone: its ProductUnpublished delivery removes it.
    """
    document = ctx.ct.get_by_id("products", product_id, expand=PRODUCT_EXPAND,
                                deadline=ctx.deadline)
    if document is None:
        log.info("product no longer exists; skipped", ctProductId=product_id)
        return 0, None
    product = Product.model_validate(document)
    if not product.master_data.published:
        log.info("product is not published; skipped", ctProductId=product_id)
        return 0, None

    config = CatalogConfig.from_settings(ctx.settings)
    now = datetime.now(UTC)  # one instant, so item and variants pick the same prices
    attributes, relationships = item_attributes(product, config, now=now)
    created = _put(ctx, "item", product_id, attributes, relationships, exists=True)

    # A new item has no variants yet: no need to list them.
    in_klaviyo = {} if created else _item_variants(ctx, product_id)
    variants, without_sku = split_variants(product.master_data.current)
    if without_sku:
        log.warning("variants without SKU not sent", ctProductId=product_id,
                    variantIds=without_sku)
    # Variant changes go as bulk jobs from BULK_MIN_VARIANTS of a kind on (a 100-variant product
    # costs a few requests instead of a hundred; see there), fewer as single calls. A job's
    # outcome is known only by polling it; polled briefly (JOB_POLL_*), the delivery waits
    # about as long as Klaviyo takes to run the job. If the deadline comes first, the delivery
    # raises and is redelivered; the redelivery lists the variants again and, since variants
    # Klaviyo already holds unchanged are skipped, writes only what the job had not. Records a
    # job reports as failed (e.g. a create that lost a race with another instance and now
    # exists) are retried one by one with `_put`, which repairs a race and makes a genuinely
    # invalid variant fail loudly (terminal: logged and acknowledged), as single calls do.
    changed: list[_VariantWrite] = []
    unchanged = 0
    for variant in variants:
        v_attributes, v_relationships = variant_attributes(product, variant, config, now=now)
        current = in_klaviyo.get(variant.sku or "")
        if current is not None and _unchanged(current, v_attributes):
            unchanged += 1
            continue
        changed.append(_VariantWrite(variant.sku or "", v_attributes, v_relationships,
                                     exists=current is not None))
    wanted = {variant.sku for variant in variants}
    removed = [sku for sku in in_klaviyo if sku not in wanted]
    if removed:
        # A SKU moved to another product is that product's to move (its delivery re-creates the
        # variant under its item), whichever delivery comes first: not deleted here.
        moved = _skus_on_other_products(ctx, product_id, removed)
        removed = [sku for sku in removed if sku not in moved]

    jobs: list[CatalogJob] = []
    rejected: list[Rejected[CatalogRecord]] = []
    # The SKU stands in for a record's CT id: a refused record is traced back by it.
    records: dict[CatalogOp, list[CatalogRecord]] = {
        "create": [CatalogRecord(w.sku, catalog_resource("variant", "create", w.sku,
                                                         w.attributes, w.relationships))
                   for w in changed if not w.exists],
        "update": [CatalogRecord(w.sku, catalog_resource("variant", "update", w.sku,
                                                         w.attributes, w.relationships))
                   for w in changed if w.exists],
        "delete": [CatalogRecord(sku, catalog_resource("variant", "delete", sku))
                   for sku in removed],
    }
    bulk_ops = {op for op, group in records.items() if len(group) >= BULK_MIN_VARIANTS}
    for op in _VARIANT_OPS:
        if op in bulk_ops:
            started, refused = _start_variant_jobs(ctx, op, records[op])
            jobs += started
            rejected += refused
    single_writes = [w for w in changed if w.op not in bulk_ops]
    single_deletes = [] if "delete" in bulk_ops else removed
    # Single calls go while Klaviyo works on the jobs.
    failures = _write_variants_singly(ctx, product_id, single_writes, single_deletes)
    if jobs:
        rejected += _wait_for_variant_jobs(ctx, jobs)
    retried = 0
    if rejected:
        by_sku = {w.sku: w for w in changed}
        skus = list(dict.fromkeys(r.item.ct_id for r in rejected))
        log.warning("variant bulk records refused; retried one by one", ctProductId=product_id,
                    skus=skus, codes=sorted({str(r.error.code) for r in rejected}))
        failures += _write_variants_singly(
            ctx, product_id, [by_sku[sku] for sku in skus if sku in by_sku],
            [sku for sku in skus if sku not in by_sku])
        retried = len(skus)
    writes = 1 + len(changed) + len(removed) - len(failures)
    log.info("product synced", ctProductId=product_id, itemCreated=created,
             variantsWritten=len(changed), variantsUnchanged=unchanged,
             variantsDeleted=len(removed), variantJobs=len(jobs), variantsRetried=retried,
             variantsRefused=len(failures))
    if failures:
        raise failures[0]
    return writes, document.get("version")


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


def remove_product(message: CtMessage, ctx: Context) -> int:
    """Delete the item and its variants, unless commercetools shows the product published.

    An old ProductUnpublished can arrive after a newer publish; deleting then would remove a
    live product (reference plugin bug). Variants go first: once the item is gone Klaviyo can
    no longer list them, so a crash in between would leave them orphaned.

    The product can be republished (and written by that delivery) between the read and the
    delete; so after the delete it is read again, and written again if it is published now.
    """
    product_id = message.resource.id
    document = ctx.ct.get_product(product_id, deadline=ctx.deadline)
    # Read the flag straight from the document: a product that fails model validation must
    # still not block (or wrongly allow) the deletion decision.
    if _is_published(document):
        log.info("product is published in commercetools; stale message, nothing deleted",
                 ctProductId=product_id)
        return 0
    writes = _remove_item(ctx, product_id)
    if not _is_published(ctx.ct.get_product(product_id, deadline=ctx.deadline)):
        return writes
    log.info("product republished while it was removed; writing it again",
             ctProductId=product_id)
    return writes + sync_product(message, ctx)


def _is_published(document: dict[str, Any] | None) -> bool:
    return document is not None and bool((document.get("masterData") or {}).get("published"))


def _remove_item(ctx: Context, product_id: str) -> int:
    """Delete the product's variants, then its item (what is already gone counts as done)."""
    writes = 0
    for sku in _item_variants(ctx, product_id):
        writes += int(ctx.klaviyo.delete_catalog_variant(sku, deadline=ctx.deadline))
    item_deleted = ctx.klaviyo.delete_catalog_item(product_id, deadline=ctx.deadline)
    writes += int(item_deleted)
    log.info("product removed", ctProductId=product_id, itemDeleted=item_deleted,
             variantsDeleted=writes - int(item_deleted))
    return writes


# -- inventory -----------------------------------------------------------------------------------


def _sku_in(container: object) -> str | None:
    """`container["sku"]` when the container is an object and the SKU a non-empty string (the
    delivery is untrusted: any other shape counts as no SKU, never as an error)."""
    sku = container.get("sku") if isinstance(container, dict) else None
    return sku if isinstance(sku, str) and sku else None


def _inventory_sku(message: CtMessage, ctx: Context) -> str | None:
    payload = message.payload
    sku = (
        _sku_in(message.resource_user_provided_identifiers)
        or _sku_in(payload.get("inventoryEntry"))  # InventoryEntryCreated
        or _sku_in(payload)  # InventoryEntryDeleted
    )
    deleted = message.notification_type == "ResourceDeleted" or (
        message.message_type == "InventoryEntryDeleted"
    )
    if not sku and not deleted:  # e.g. InventoryEntryQuantitySet carries no SKU
        document = ctx.ct.get_inventory_entry(message.resource.id, deadline=ctx.deadline)
        sku = _sku_in(document)
    return sku


def _inventory_entries(ctx: Context, sku: str) -> Iterable[InventoryEntry]:
    pages = ctx.ct.iter_pages("inventory", where=[f"sku={predicate_string(sku)}"],
                              deadline=ctx.deadline)
    return [InventoryEntry.model_validate(doc) for page in pages for doc in page]


def sync_inventory(message: CtMessage, ctx: Context) -> int:
    """Set the variant's `inventory_quantity` from all current inventory entries of its SKU.

    Reading every entry of the SKU (rather than the one the message names) makes the result
    independent of delivery order and lets a deletion fall back to the channel-less stock or 0.
    Only variants already in Klaviyo are updated: creating one needs the product's data, and the
    product sync writes the stock with it.
    """
    sku = _inventory_sku(message, ctx)
    if not sku:
        log.info("inventory entry SKU unknown; skipped", ctInventoryEntryId=message.resource.id)
        return 0
    channel = ctx.settings.inventory_channel_id
    quantity = inventory_quantity(_inventory_entries(ctx, sku), channel)
    variant = ctx.klaviyo.get_catalog_variant(sku, deadline=ctx.deadline)
    if variant is None:
        log.info("variant not in Klaviyo yet; skipped", sku=sku)
        return 0
    if (variant.get("attributes") or {}).get("inventory_quantity") == quantity:
        log.info("variant stock unchanged", sku=sku, inventoryQuantity=quantity)
        return 0
    try:
        ctx.klaviyo.update_catalog_variant(sku, {"inventory_quantity": quantity},
                                           deadline=ctx.deadline)
    except KlaviyoError as exc:
        if exc.status != 404:
            raise
        log.info("variant deleted from Klaviyo meanwhile; skipped", sku=sku)
        return 0
    log.info("variant stock updated", sku=sku, inventoryQuantity=quantity)
    return 1


# -- registry ------------------------------------------------------------------------------------


def processors(settings: Settings) -> list[Processor]:
    return [
        Processor("CategoryCreated",
                  Trigger("category", messages=frozenset({"CategoryCreated"})), sync_category),
        Processor("CategoryResourceUpdated",
                  Trigger("category", changes=CREATED_OR_UPDATED), sync_category),
        Processor("CategoryResourceDeleted",
                  Trigger("category", changes=DELETED), delete_category),
        Processor("ProductPublished",
                  Trigger("product", messages=frozenset({"ProductPublished"})), sync_product),
        # Current data also changes without a publish (e.g. prices set with staged=false).
        Processor("ProductResourceUpdated",
                  Trigger("product", changes=CREATED_OR_UPDATED), sync_product),
        Processor("ProductUnpublished",
                  Trigger("product", messages=frozenset({"ProductUnpublished"})), remove_product),
        Processor("ProductDeleted",
                  Trigger("product", messages=frozenset({"ProductDeleted"})), remove_product),
        Processor("ProductResourceDeleted",
                  Trigger("product", changes=DELETED), remove_product),
        Processor("InventoryChanged",
                  Trigger("inventory-entry", messages=INVENTORY_MESSAGES,
                          changes=CREATED_OR_UPDATED | DELETED),
                  sync_inventory),
    ]
