"""A category that moved: the Klaviyo items of the products under it get their category links
rewritten.

An item is linked to each of its product's categories and to their ancestors (so "Women" shows
what is in "Jeans"). When a category gets another parent, every product under it (or under a
descendant) has other ancestors, yet no product changed, so no product delivery comes.
commercetools sends no message of its own for a parent change (the category messages are
CategoryCreated and CategorySlugChanged): it is a ResourceUpdated change like any other, and
the category processor calls `relink_products` whenever a breadcrumb name in the subtree is out
of date in Klaviyo (a move or a rename; other changes cost nothing here).

Per product: one Klaviyo read (the categories linked to its item) and, only when they differ
from what commercetools implies, one item update carrying the categories relationship (an
update replaces the whole list, so old ancestors go too). The read makes it idempotent and
resumable: at most MAX_RELINKS_PER_DELIVERY items are rewritten per delivery, then the delivery
is redelivered (the breadcrumb names are written only after every product was checked, so the
redelivery still sees them out of date and goes on; items already right cost a read only).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from shared.commercetools.client import predicate_string
from shared.commercetools.models.product import ProductData
from shared.errors import KlaviyoError, RetryableError
from shared.klaviyo.catalog import catalog_id, catalog_ref
from shared.klaviyo.client import filter_string
from shared.log import get_logger
from shared.mapping.catalog import category_ids
from shared.processors.base import Context
from shared.processors.catalog_objects import chunks, external_id_of

log = get_logger(__name__)

# Item updates one delivery makes before it hands the rest to its redelivery: ~10 s of the
# shared catalog write budget (75/s burst, 700/min steady) per delivery.
MAX_RELINKS_PER_DELIVERY = 100
# Categories per `categories(id in (...))` predicate: keeps the query URL short.
_IDS_PER_QUERY = 50
# The categories' own `ancestors` references give the ancestor ids (as for a product sync).
PROJECTION_EXPAND = ("categories[*]",)


class RelinkContinues(RetryableError):
    """More items to relink than one delivery rewrites: the redelivery goes on."""


def relink_products(ctx: Context, category_ids_: list[str]) -> int:
    """Rewrite the category links of the items of published products in these categories,
    where Klaviyo's differ from commercetools'. Returns the items written."""
    written = checked = 0
    for product_id, wanted in _products_in(ctx, category_ids_):
        checked += 1
        if _linked_categories(ctx, product_id) == set(wanted):
            continue
        if written >= MAX_RELINKS_PER_DELIVERY:
            log.info("category moved: more items to relink; redelivered to go on",
                     itemsRelinked=written, itemsChecked=checked)
            raise RelinkContinues(f"{written} items relinked, more to go")
        relationships = {"categories": {"data": [catalog_ref("category", c) for c in wanted]}}
        try:
            ctx.klaviyo.update_catalog_object("item", product_id, {}, relationships,
                                              deadline=ctx.deadline)
        except KlaviyoError as exc:
            if exc.status != 404:
                raise
            continue  # not in Klaviyo (yet): its product sync writes it with the right links
        written += 1
    if checked:
        log.info("category subtree's items checked", itemsChecked=checked,
                 itemsRelinked=written)
    return written


def _products_in(ctx: Context, categories: list[str]) -> Iterator[tuple[str, list[str]]]:
    """(product id, the category ids its item should be linked to) for each published product
    in any of `categories`, once each."""
    seen: set[str] = set()
    for chunk in chunks(categories, _IDS_PER_QUERY):
        quoted = ", ".join(predicate_string(c) for c in chunk)
        pages = ctx.ct.iter_pages("product-projections", where=[f"categories(id in ({quoted}))"],
                                  expand=PROJECTION_EXPAND, deadline=ctx.deadline)
        for page in pages:
            for doc in page:
                product_id = str(doc.get("id") or "")
                if not product_id or product_id in seen:
                    continue
                seen.add(product_id)
                wanted = _wanted(doc)
                if wanted is not None:
                    yield product_id, wanted


def _wanted(projection: dict[str, Any]) -> list[str] | None:
    try:
        data = ProductData.model_validate(projection)
    except ValidationError:
        # Its own product sync reports it (and writes nothing for it either).
        log.warning("product failed validation; not relinked", ctProductId=projection.get("id"))
        return None
    return category_ids(data)


def _linked_categories(ctx: Context, product_id: str) -> set[str]:
    """The categories Klaviyo links the product's item to (external ids)."""
    item_filter = f"equals(item.id,{filter_string(catalog_id(product_id))})"
    return {external_id_of(c) for c in ctx.klaviyo.iter_catalog_categories(
        item_filter, deadline=ctx.deadline)}
