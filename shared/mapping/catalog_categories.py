"""commercetools categories → Klaviyo catalog categories, and an item's category ids.

Pure. External id: the CT category id. The breadcrumb name (`Women > Pants > Jeans`) is what
Klaviyo shows (anchor §2.10); an item is listed under its categories and their ancestors (§2.11).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from shared.commercetools.models.base import CtModel, LocalizedString, Reference
from shared.commercetools.models.category import Category
from shared.commercetools.models.product import ProductData
from shared.mapping.common import localized

BREADCRUMB_SEPARATOR = " > "


def _category_label(name: LocalizedString | None, fallback: str, locale: str | None) -> str:
    return localized(name, locale) or fallback


class _Ancestor(CtModel):
    """The fields of an expanded ancestor (`ref.obj`, a raw document) the breadcrumb reads."""

    name: LocalizedString = {}
    key: str | None = None


def _ancestor_label(ref: Reference, locale: str | None) -> str | None:
    """An expanded ancestor's name; None when it is not expanded or not readable (an expanded
    reference is a raw document: a malformed one must not fail the whole mapping)."""
    if ref.obj is None:
        return None
    try:
        ancestor = _Ancestor.model_validate(ref.obj)
    except ValidationError:
        return None
    return _category_label(ancestor.name, ancestor.key or ref.id, locale)


def category_name(category: Category, locale: str | None = None) -> str:
    """Breadcrumb of the ancestors' and the category's names, root first: `Women > Pants > Jeans`.

    Needs `ancestors[*]` expanded; an ancestor that is not (it was deleted meanwhile), or whose
    expanded document is unreadable, is left out rather than shown as an id.
    """
    labels = (_ancestor_label(ref, locale) for ref in category.ancestors)
    names = [label for label in labels if label is not None]
    names.append(_category_label(category.name, category.key or category.id, locale))
    return BREADCRUMB_SEPARATOR.join(names)


def category_attributes(category: Category, locale: str | None = None) -> dict[str, Any]:
    """Klaviyo catalog-category attributes (`external_id` is dropped from updates)."""
    return {"external_id": category.id, "name": category_name(category, locale)}


def category_ids(data: ProductData) -> list[str]:
    """The product's categories, then their ancestors, without repeats.

    Ancestors only when `masterData.current.categories[*]` is expanded (their references are in
    the category); Klaviyo lists an item under each id, so "Women" shows what is in "Jeans".
    """
    ids = [ref.id for ref in data.categories]
    for ref in data.categories:
        for ancestor in (ref.obj or {}).get("ancestors") or []:
            if isinstance(ancestor, dict) and ancestor.get("id"):
                ids.append(ancestor["id"])
    return list(dict.fromkeys(ids))
