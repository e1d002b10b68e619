"""Category (with `ancestors[*]` expanded, so ancestor names are at hand)."""

from __future__ import annotations

from shared.commercetools.models.base import CtModel, LocalizedString, Reference


class Category(CtModel):
    id: str
    version: int | None = None
    key: str | None = None
    name: LocalizedString = {}
    slug: LocalizedString = {}
    parent: Reference | None = None
    # Root first, as commercetools orders them; `obj` holds the Category when expanded.
    ancestors: list[Reference] = []
    order_hint: str | None = None
    external_id: str | None = None
