"""Products with their categories in one read (order events, carts, the bulk order export).

An order's items need each product's slug, attributes and category breadcrumbs. Expanding the
product's categories and, nested, those categories' ancestors gives all of it in one query,
where reading the categories separately took a second one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shared.deadline import Deadline

if TYPE_CHECKING:
    from shared.commercetools.client import CommercetoolsClient

PROJECTION_EXPAND = ("categories[*]", "categories[*].ancestors[*]")
PRODUCT_EXPAND = ("masterData.current.categories[*]",
                  "masterData.current.categories[*].ancestors[*]")


def get_products_with_categories(
    ct: CommercetoolsClient, ids: Sequence[str], *, deadline: Deadline = Deadline.never()
) -> list[dict[str, Any]]:
    """Products by id, categories and their ancestors expanded, shaped like Product documents
    that hold only `masterData.current` (as `CommercetoolsClient.get_products_current`).

    Published products come from product-projections (the current data alone); the rest
    (unpublished now, yet ordered earlier) from products. Ids not found are left out.
    """
    unique = list(dict.fromkeys(ids))
    if not unique:
        return []
    found = {p["id"]: {"id": p["id"], "key": p.get("key"),
                       "masterData": {"published": True, "current": p}}
             for p in ct.get_by_ids("product-projections", unique, expand=PROJECTION_EXPAND,
                                    deadline=deadline)}
    rest = [i for i in unique if i not in found]
    if rest:
        for product in ct.get_by_ids("products", rest, expand=PRODUCT_EXPAND, deadline=deadline):
            found[product["id"]] = product
    return [found[i] for i in unique if i in found]
