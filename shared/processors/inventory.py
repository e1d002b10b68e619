"""Inventory entries → the Klaviyo variant's `inventory_quantity`."""

from __future__ import annotations

from shared.commercetools.client import predicate_string
from shared.commercetools.messages import CtMessage
from shared.commercetools.models.inventory import InventoryEntry
from shared.errors import KlaviyoError
from shared.log import get_logger
from shared.mapping.catalog_stock import inventory_quantity
from shared.processors.base import Context
from shared.processors.catalog_objects import MAX_STALE_REWRITES, StillChanging

log = get_logger(__name__)


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


def _quantity(ctx: Context, sku: str) -> int:
    """The SKU's quantity from all its current inventory entries."""
    pages = ctx.ct.iter_pages("inventory", where=[f"sku={predicate_string(sku)}"],
                              deadline=ctx.deadline)
    entries = [InventoryEntry.model_validate(doc) for page in pages for doc in page]
    return inventory_quantity(entries, ctx.settings.inventory_channel_id)


def sync_inventory(message: CtMessage, ctx: Context) -> int:
    """Set the variant's `inventory_quantity` from all current inventory entries of its SKU.

    Reading every entry of the SKU (rather than the one the message names) makes the result
    independent of delivery order and lets a deletion fall back to the channel-less stock or 0.
    Only variants already in Klaviyo are updated: creating one needs the product's data, and the
    product sync writes the stock with it.

    Two deliveries for one SKU can overlap, and the one that read the older stock may write
    last. So after the write the entries are read again: if the quantity moved, the latest is
    written (at most MAX_STALE_REWRITES times, then the delivery is redelivered).
    """
    sku = _inventory_sku(message, ctx)
    if not sku:
        log.info("inventory entry SKU unknown; skipped", ctInventoryEntryId=message.resource.id)
        return 0
    quantity = _quantity(ctx, sku)
    variant = ctx.klaviyo.get_catalog_variant(sku, deadline=ctx.deadline)
    if variant is None:
        log.info("variant not in Klaviyo yet; skipped", sku=sku)
        return 0
    if (variant.get("attributes") or {}).get("inventory_quantity") == quantity:
        log.info("variant stock unchanged", sku=sku, inventoryQuantity=quantity)
        return 0
    writes = 0
    for _ in range(1 + MAX_STALE_REWRITES):
        try:
            ctx.klaviyo.update_catalog_variant(sku, {"inventory_quantity": quantity},
                                               deadline=ctx.deadline)
        except KlaviyoError as exc:
            if exc.status != 404:
                raise
            log.info("variant deleted from Klaviyo meanwhile; skipped", sku=sku)
            return writes
        writes += 1
        log.info("variant stock updated", sku=sku, inventoryQuantity=quantity)
        latest = _quantity(ctx, sku)
        if latest == quantity:
            return writes
        log.info("stock changed while it was written; writing the latest", sku=sku,
                 writtenQuantity=quantity, latestQuantity=latest)
        quantity = latest
    raise StillChanging(f"stock of a variant changed during {MAX_STALE_REWRITES + 1} writes")
