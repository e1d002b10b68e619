"""Klaviyo catalog objects as the catalog processors write them: update-or-create by external
id, the skip-if-unchanged test, and the bounded re-write after commercetools moved on.

Shared by the category, product (item + variant) and inventory processors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shared.errors import KlaviyoError, RetryableError
from shared.klaviyo.catalog import CATALOG_ID_PREFIX, CatalogKind
from shared.processors.base import Context

# Re-writes after the version moved during a write, before the delivery is redelivered instead.
MAX_STALE_REWRITES = 2


class StillChanging(RetryableError):
    """The resource kept changing while it was written: the redelivery writes its final state."""


def external_id_of(resource: dict[str, Any]) -> str:
    external = (resource.get("attributes") or {}).get("external_id")
    if external:
        return str(external)
    return str(resource.get("id", "")).removeprefix(CATALOG_ID_PREFIX)


def chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


# Set when an object is created and never returned or changed by an update.
_CREATE_ONLY = frozenset({"external_id", "integration_type", "catalog_type"})


def unchanged(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Klaviyo already holds every value we would write.

    Skipping such writes is what lets a product with more variants than one delivery can write
    (Klaviyo allows ~700 catalog writes a minute) finish over redeliveries: each delivery only
    writes what the previous ones did not.
    """
    return all(current.get(key) == value for key, value in wanted.items()
               if key not in _CREATE_ONLY)


def item_variants(ctx: Context, product_id: str) -> dict[str, dict[str, Any]]:
    """The item's variants in Klaviyo (SKU → attributes), all pages (> 100 variants work)."""
    return {external_id_of(v): v.get("attributes") or {}
            for v in ctx.klaviyo.iter_item_variants(product_id, deadline=ctx.deadline)}


def variant_of_item(ctx: Context, sku: str, relationships: dict[str, Any] | None) -> bool:
    """Whether the existing variant `sku` is one of its item's (a create that lost a race with
    another delivery of the same product), rather than another item's (a SKU that moved)."""
    item = (((relationships or {}).get("item") or {}).get("data") or {}).get("id")
    if not item:
        return True
    variants = ctx.klaviyo.iter_item_variants(str(item).removeprefix(CATALOG_ID_PREFIX),
                                              deadline=ctx.deadline)
    return any(external_id_of(v) == sku for v in variants)


def put(
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
    if kind == "variant" and not variant_of_item(ctx, external_id, relationships):
        # The SKU is a variant of another item: it moved between products in commercetools.
        # An update cannot change a variant's item, so it is re-created under this one.
        klaviyo.delete_catalog_object("variant", external_id, deadline=deadline)
        klaviyo.create_catalog_object(kind, external_id, attributes, relationships,
                                      deadline=deadline)
        return True
    klaviyo.update_catalog_object(kind, external_id, attributes, relationships, deadline=deadline)
    return False
