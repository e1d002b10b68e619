"""Product and category lookups for order and cart events: what a line item's product is called,
where it sits in the category tree and where it lives on the storefront. Pure: the caller reads
the commercetools documents and builds the lookup; orders and checkout both use it.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import ValidationError

from shared.commercetools.models.base import CtModel, LocalizedString, Reference
from shared.commercetools.models.order import Order
from shared.log import get_logger
from shared.mapping.common import localized

log = get_logger(__name__)

CATEGORY_SEPARATOR = " > "

@dataclass(frozen=True)
class ProductInfo:
    """What an order event needs from the ordered product beyond the line item itself."""

    categories: tuple[str, ...] = ()  # breadcrumbs, every level: "Women", "Women > Pants", …
    slug: str | None = None
    key: str | None = None
    slugs: LocalizedString = field(default_factory=dict)  # every locale (see line_item_properties)
    # Product-level attributes (raw `{name, value}`): where the brand is when no variant has it.
    attributes: tuple[Mapping[str, Any], ...] = ()


ProductLookup = Mapping[str, ProductInfo]  # by product id


def product_ids(order: Order) -> list[str]:
    """Ids of the ordered products, first occurrence order (what the caller must fetch)."""
    return list(dict.fromkeys(li.product_id for li in order.line_items if li.product_id))


def category_ids(products: Iterable[Mapping[str, Any]]) -> list[str]:
    """Ids of the current categories of these raw Product documents."""
    ids: list[str] = []
    for product in products:
        current = ((product.get("masterData") or {}).get("current")) or {}
        for ref in current.get("categories") or []:
            if isinstance(ref, Mapping) and ref.get("id"):
                ids.append(ref["id"])
    return list(dict.fromkeys(ids))


class _Category(CtModel):
    # Lenient on purpose (only what a breadcrumb needs): a category that fails the catalog's
    # stricter model must still name an order's items.
    id: str
    name: LocalizedString = {}
    ancestors: list[Reference] = []  # root first; `obj` holds the Category when expanded


class _ProductData(CtModel):
    slug: LocalizedString = {}
    categories: list[Reference] = []
    attributes: list[dict[str, Any]] = []


class _MasterData(CtModel):
    current: _ProductData = _ProductData()


class _Product(CtModel):
    id: str
    key: str | None = None
    master_data: _MasterData = _MasterData()


def category_breadcrumbs(
    category: Mapping[str, Any], names: Mapping[str, LocalizedString], locale: str | None
) -> list[str]:
    """Every level of a raw Category's path, root first: ["Women", "Women > Pants"].

    Ancestor names come from the expanded `ancestors[*].obj` or, failing that, from `names`; an
    ancestor whose name is unknown is left out of the path rather than shown as an id.
    """
    parsed = _Category.model_validate(category)
    path: list[str] = []
    for ref in parsed.ancestors:
        name = localized((ref.obj or {}).get("name") or names.get(ref.id), locale)
        if name:
            path.append(name)
    own = localized(parsed.name, locale)
    if own:
        path.append(own)
    return [CATEGORY_SEPARATOR.join(path[: i + 1]) for i in range(len(path))]


_Doc = TypeVar("_Doc", bound=CtModel)


def _readable(
    model: type[_Doc], docs: Iterable[Mapping[str, Any]], id_field: str, warning: str
) -> Iterator[tuple[Mapping[str, Any], _Doc]]:
    """Each raw document that parses as `model`, with its parsed form. One that does not is
    logged (its id only) and left out: it only loses its enrichment."""
    for doc in docs:
        try:
            parsed = model.model_validate(doc)
        except ValidationError:
            log.warning(warning, **{id_field: str(doc.get("id"))})
            continue
        yield doc, parsed


def product_lookup(
    products: Iterable[Mapping[str, Any]],
    categories: Iterable[Mapping[str, Any]] = (),
    *,
    locale: str | None = None,
) -> dict[str, ProductInfo]:
    """ProductInfo by product id from raw Product documents and raw Categories (with
    `ancestors[*]` expanded, or with the ancestors themselves among `categories`).

    A document that does not parse only loses its enrichment: the order's events still go.
    """
    by_id: dict[str, Mapping[str, Any]] = {}
    names: dict[str, LocalizedString] = {}
    for doc, category in _readable(_Category, categories, "ctCategoryId",
                                   "category document unreadable; left out of Categories"):
        by_id[category.id] = doc
        names[category.id] = category.name
        for ref in category.ancestors:
            if ref.obj and ref.obj.get("name"):
                names.setdefault(ref.id, ref.obj["name"])

    lookup: dict[str, ProductInfo] = {}
    for _, product in _readable(_Product, products, "ctProductId",
                                "product document unreadable; order items lack its categories"):
        current = product.master_data.current
        paths: list[str] = []
        for ref in current.categories:
            found = by_id.get(ref.id) or ref.obj
            if found is None:
                continue
            try:
                paths.extend(category_breadcrumbs(found, names, locale))
            except ValidationError:
                continue
        lookup[product.id] = ProductInfo(
            categories=tuple(dict.fromkeys(paths)),
            slug=localized(current.slug, locale),
            key=product.key,
            slugs=dict(current.slug),
            attributes=tuple(current.attributes),
        )
    return lookup


def product_url(
    template: str | None, *, slug: str | None, product_id: str | None, sku: str | None,
    key: str | None = None,
) -> str | None:
    """PRODUCT_URL_TEMPLATE filled from a line item, in the catalog's syntax (`{slug}` `{id}`
    `{key}` `{sku}`, `{{productSlug}}` accepted, `{{` a literal brace; see mapping.catalog), so
    order events link to the same page as the catalog item. None when the template needs a value
    the item lacks (the product was deleted, say): a URL with a hole in it is worse than none.
    """
    if not template:
        return None
    values = {"slug": slug, "id": product_id, "key": key, "sku": sku}
    try:
        template, used = _url_template(template)
        if any(not values.get(name) for name in used):
            return None
        return template.format(**{n: quote(values[n] or "", safe="") for n in used})
    except (ValueError, KeyError, IndexError):  # the settings validator rejects these first
        return None


@lru_cache(maxsize=16)
def _url_template(template: str) -> tuple[str, frozenset[str]]:
    """The template in `str.format` syntax and the field names it uses (parsed once: every
    line item of every event fills it)."""
    template = template.replace("{{productSlug}}", "{slug}")
    used = frozenset(name for _, name, _, _ in string.Formatter().parse(template)
                     if name is not None)
    return template, used
