"""Catalog: categories, products (Klaviyo items + variants) and stock → Klaviyo catalog writes.

Deliveries are at-least-once, unordered and concurrent, so no handler trusts the message body:
each reads the resource's current state from commercetools, makes Klaviyo match it, and then
reads commercetools again to confirm it did not move on meanwhile (if it did, the latest state
is written, bounded, then the delivery is redelivered). A late, repeated or overlapping message
therefore ends in commercetools' latest state, and destructive actions (deleting an item)
happen only when commercetools shows the product unpublished or gone. Every write is idempotent
(update-or-create by external id, delete where 404 means done), so a redelivery after a partial
failure is safe.

Where the handlers live:
  shared/processors/categories.py      category names (breadcrumbs of the subtree)
  shared/processors/category_links.py  item → category links of the products under a moved one
  shared/processors/products.py        items, their removal, the confirm-after-write loop
  shared/processors/variants.py        a product's variant writes (single calls or bulk jobs)
  shared/processors/inventory.py       variant stock
  shared/processors/catalog_objects.py update-or-create, unchanged test, StillChanging

Processor names (for DISABLED_PROCESSORS), triggers and Klaviyo writes:

  CategoryCreated          message CategoryCreated           upsert category + descendants' names
  CategoryResourceUpdated  changes ResourceCreated/-Updated  same; relink the items below a move
  CategoryResourceDeleted  change ResourceDeleted            delete category
  ProductPublished         message ProductPublished          upsert item, then its variants
  ProductResourceUpdated   changes ResourceCreated/-Updated  same, when published
  ProductUnpublished       message ProductUnpublished        delete variants, then the item, when
  ProductDeleted           message ProductDeleted            commercetools shows the product
  ProductResourceDeleted   change ResourceDeleted            unpublished or gone
  InventoryChanged         inventory-entry messages InventoryEntryCreated/-QuantitySet/-Deleted
                           and changes ResourceCreated/-Updated/-Deleted:
                           the variant's inventory_quantity
"""

from __future__ import annotations

from shared.config import Settings
from shared.processors.base import Processor, Trigger
from shared.processors.catalog_objects import MAX_STALE_REWRITES, StillChanging
from shared.processors.categories import delete_category, sync_category
from shared.processors.inventory import sync_inventory
from shared.processors.products import remove_product, sync_product
from shared.processors.variants import (
    BULK_MIN_VARIANTS,
    JOB_POLL_BACKOFF,
    JOB_POLL_FIRST,
    JOB_POLL_MAX,
)

__all__ = [
    "BULK_MIN_VARIANTS", "JOB_POLL_BACKOFF", "JOB_POLL_FIRST", "JOB_POLL_MAX",
    "MAX_STALE_REWRITES", "StillChanging", "processors",
]

INVENTORY_MESSAGES = frozenset(
    {"InventoryEntryCreated", "InventoryEntryQuantitySet", "InventoryEntryDeleted"}
)
CREATED_OR_UPDATED = frozenset({"ResourceCreated", "ResourceUpdated"})
DELETED = frozenset({"ResourceDeleted"})


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
