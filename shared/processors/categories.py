"""Categories → Klaviyo catalog categories (breadcrumb names), and the item links of the
products under a category that moved (`category_links`)."""

from __future__ import annotations

from typing import Any

from shared.commercetools.client import predicate_string
from shared.commercetools.messages import CtMessage
from shared.commercetools.models.category import Category
from shared.klaviyo.catalog import catalog_id
from shared.klaviyo.client import filter_string
from shared.log import get_logger
from shared.mapping.catalog_categories import category_attributes
from shared.processors.base import Context
from shared.processors.catalog_objects import (
    MAX_STALE_REWRITES,
    StillChanging,
    chunks,
    external_id_of,
    put,
)
from shared.processors.category_links import relink_products

log = get_logger(__name__)

CATEGORY_EXPAND = ("ancestors[*]",)
# Ids per `any(ids,[...])` filter: each compound id is ~60 characters, keep URLs short.
_IDS_PER_FILTER = 50


def sync_category(message: CtMessage, ctx: Context) -> int:
    """Make the category and every descendant carry their current breadcrumb name.

    A change notification does not say what changed, and a breadcrumb depends on every ancestor,
    so after any change the subtree's names are recomputed and compared with Klaviyo's: only
    differing (or missing) ones are written. A rename or move thus reaches all descendants, a
    redelivery after a partial failure finishes the job, and an unrelated change (description,
    order hint) costs no write. When a name is out of date the category may have moved, so the
    items of the products under the subtree get their category links checked first
    (`relink_products`).

    Two deliveries for one category can overlap, and the one that read the older names may
    write last. So after writing, the subtree is read again: if a version moved (or a member
    is gone), the latest state is written (at most MAX_STALE_REWRITES times, then the delivery
    is redelivered). A delivery that wrote nothing wrote nothing stale, and needs no check.
    """
    category_id = message.resource.id
    subtree = _read_subtree(ctx, category_id)
    writes = 0
    for _ in range(1 + MAX_STALE_REWRITES):
        own = next((c for c in subtree if c.id == category_id), None)
        if own is None:
            log.info("category no longer exists; skipped", ctCategoryId=category_id)
            return writes
        count = _write_subtree(ctx, own, subtree)
        writes += count
        if not count:
            return writes
        latest = _read_subtree(ctx, category_id)
        writes += _delete_gone(ctx, _versions(subtree).keys() - _versions(latest).keys())
        if _versions(latest) == _versions(subtree):
            return writes
        log.info("category changed while it was written; writing its latest state",
                 ctCategoryId=category_id)
        subtree = latest
    raise StillChanging(f"category changed during {MAX_STALE_REWRITES + 1} writes")


def _delete_gone(ctx: Context, left: set[str]) -> int:
    """Delete those of the categories that left the subtree meanwhile which commercetools no
    longer has (deleted while we wrote them; one that moved elsewhere stays)."""
    writes = 0
    for external_id in sorted(left):
        if ctx.ct.get_category(external_id, deadline=ctx.deadline) is None:
            writes += int(ctx.klaviyo.delete_catalog_category(external_id,
                                                              deadline=ctx.deadline))
    return writes


def _read_subtree(ctx: Context, category_id: str) -> list[Category]:
    """The category and its descendants, in one query (ancestors expanded for the names)."""
    quoted = predicate_string(category_id)
    pages = ctx.ct.iter_pages(
        "categories", where=[f"id = {quoted} or ancestors(id = {quoted})"],
        expand=CATEGORY_EXPAND, deadline=ctx.deadline,
    )
    return [Category.model_validate(doc) for page in pages for doc in page]


def _versions(subtree: list[Category]) -> dict[str, Any]:
    return {c.id: c.version for c in subtree}


def _write_subtree(ctx: Context, own: Category, subtree: list[Category]) -> int:
    # Parents before children, so a partial failure leaves the upper levels right.
    categories = [own] + sorted((c for c in subtree if c.id != own.id),
                                key=lambda c: len(c.ancestors))
    locale = ctx.settings.preferred_locale
    wanted = {c.id: category_attributes(c, locale) for c in categories}
    current = _klaviyo_category_names(ctx, list(wanted))
    stale = [external_id for external_id, attributes in wanted.items()
             if current.get(external_id) != attributes["name"]]
    relinked = 0
    if any(external_id in current for external_id in stale):
        # A name in Klaviyo out of date: renamed or moved. Items first, names last, so a
        # relink cut short is still seen (and continued) by the redelivery.
        relinked = relink_products(ctx, own, wanted)
    for external_id in stale:
        put(ctx, "category", external_id, wanted[external_id], None,
            exists=external_id in current)
    log.info("category synced", ctCategoryId=own.id, descendants=len(categories) - 1,
             categoriesWritten=len(stale), itemsRelinked=relinked)
    return len(stale) + relinked


def _klaviyo_category_names(ctx: Context, external_ids: list[str]) -> dict[str, str]:
    """Current Klaviyo names of those categories that exist (external id → name)."""
    names: dict[str, str] = {}
    for chunk in chunks(external_ids, _IDS_PER_FILTER):
        ids = ",".join(filter_string(catalog_id(external)) for external in chunk)
        for resource in ctx.klaviyo.iter_catalog_categories(f"any(ids,[{ids}])",
                                                            deadline=ctx.deadline):
            name = (resource.get("attributes") or {}).get("name")
            if isinstance(name, str):
                names[external_id_of(resource)] = name
    return names


def delete_category(message: CtMessage, ctx: Context) -> int:
    """Category ids are never reused, so a deletion needs no re-check; 404 = already gone."""
    deleted = ctx.klaviyo.delete_catalog_category(message.resource.id, deadline=ctx.deadline)
    if not deleted:
        log.info("category was not in Klaviyo", ctCategoryId=message.resource.id)
    return int(deleted)
