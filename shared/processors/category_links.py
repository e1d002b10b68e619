"""A category that moved: the Klaviyo items of the products under it get their category links
rewritten.

An item is linked to each of its product's categories and to their ancestors (so "Women" shows
what is in "Jeans"). When a category gets another parent, every product under it (or under a
descendant) has other ancestors, yet no product changed, so no product delivery comes.
commercetools sends no message of its own for a parent change (the category messages are
CategoryCreated and CategorySlugChanged): it is a ResourceUpdated change like any other, and
the category processor calls `relink_products` whenever a breadcrumb name in the subtree is out
of date in Klaviyo (a move or a rename; other changes cost nothing here).

What it costs, for the published products under the subtree (commercetools product-projections,
500 a page):
- A rename, or a move already relinked: the links of the first and the last product's items are
  read (two Klaviyo GETs). Items are relinked in id order, so a relink cut short leaves the last
  one still wrong.
- A move: the items linked to each of the category's (new) ancestors, and to each category the
  sampled items are linked to but should not be (its old ancestors), are listed (100 a page);
  the items missing a new ancestor or holding an old one are rewritten (one item update each,
  carrying the whole categories relationship, which replaces the old list).
At most MAX_RELINKS_PER_DELIVERY items are rewritten per delivery, then the delivery is
redelivered. The breadcrumb names are written only once every item is right, so the redelivery
still sees them out of date and goes on with what is left (the listings tell it what that is).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from shared.commercetools.client import predicate_string
from shared.commercetools.models.category import Category
from shared.commercetools.models.product import ProductData
from shared.errors import KlaviyoError, RetryableError
from shared.klaviyo.catalog import catalog_id, catalog_ref
from shared.klaviyo.client import filter_string
from shared.log import get_logger
from shared.mapping.catalog_categories import category_ids
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


def relink_products(ctx: Context, category: Category, subtree: Iterable[str]) -> int:
    """Rewrite the category links of the items of published products under `category` (its
    subtree's ids), where Klaviyo's differ from commercetools'. Returns the items written."""
    products = _products_in(ctx, list(subtree))
    if not products:
        return 0
    ids = sorted(products)
    samples = {pid: _linked_categories(ctx, pid) for pid in dict.fromkeys((ids[0], ids[-1]))}
    wrong = {pid for pid, linked in samples.items() if linked != set(products[pid])}
    if not wrong:
        return 0  # a rename, or a move whose relink is done
    # What the sampled items hold but should not: the old ancestors of a moved category.
    old = set().union(*(samples[pid] - set(products[pid]) for pid in wrong))
    new = [ref.id for ref in category.ancestors]
    for ancestor in new:
        linked = _items_in(ctx, ancestor)
        wrong |= {pid for pid, wanted in products.items()
                  if ancestor in wanted and pid not in linked}
    for stale in sorted(old):
        linked = _items_in(ctx, stale)
        wrong |= {pid for pid, wanted in products.items() if stale not in wanted and pid in linked}
    written = 0
    for pid in sorted(wrong):
        if written >= MAX_RELINKS_PER_DELIVERY:
            log.info("category moved: more items to relink; redelivered to go on",
                     ctCategoryId=category.id, itemsRelinked=written,
                     itemsLeft=len(wrong) - written)
            raise RelinkContinues(f"{written} items relinked, {len(wrong) - written} to go")
        relationships = {"categories": {"data": [catalog_ref("category", c)
                                                 for c in products[pid]]}}
        try:
            ctx.klaviyo.update_catalog_object("item", pid, {}, relationships,
                                              deadline=ctx.deadline)
        except KlaviyoError as exc:
            if exc.status != 404:
                raise
            continue  # not in Klaviyo (yet): its product sync writes it with the right links
        written += 1
    log.info("category moved: items relinked", ctCategoryId=category.id, itemsRelinked=written,
             products=len(products))
    return written


def _products_in(ctx: Context, categories: list[str]) -> dict[str, list[str]]:
    """Product id → the category ids its item should be linked to, for each published product
    in any of `categories`."""
    products: dict[str, list[str]] = {}
    for chunk in chunks(categories, _IDS_PER_QUERY):
        quoted = ", ".join(predicate_string(c) for c in chunk)
        pages = ctx.ct.iter_pages("product-projections", where=[f"categories(id in ({quoted}))"],
                                  expand=PROJECTION_EXPAND, deadline=ctx.deadline)
        for page in pages:
            for doc in page:
                product_id = str(doc.get("id") or "")
                if product_id and product_id not in products:
                    wanted = _wanted(doc)
                    if wanted is not None:
                        products[product_id] = wanted
    return products


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


def _items_in(ctx: Context, category_id: str) -> set[str]:
    """The items Klaviyo links to the category (external ids)."""
    category_filter = f"equals(category.id,{filter_string(catalog_id(category_id))})"
    return {external_id_of(i) for i in ctx.klaviyo.iter_catalog_items(
        category_filter, deadline=ctx.deadline)}
