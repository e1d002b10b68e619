"""Catalog items, variants and categories: the single-object calls and listings, and the JSON:API
resource bodies (`catalog_resource`, `catalog_ref`) the mappers and the bulk jobs build on.

Klaviyo ids catalog objects by a compound id, `$custom:::$default:::<external id>`; we always use
the `$custom` integration and the `$default` catalog, so an object's id follows from its external
id (commercetools product id, SKU or category id) and no lookup table is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from shared.deadline import Deadline
from shared.errors import KlaviyoError
from shared.klaviyo.transport import KlaviyoTransport

CatalogKind = Literal["item", "variant", "category"]

CATALOG_ID_PREFIX = "$custom:::$default:::"


def catalog_id(external_id: str) -> str:
    """The compound Klaviyo id of the catalog object with this external id."""
    return CATALOG_ID_PREFIX + external_id


def _path_id(external_id: str) -> str:
    # `$` and `:` would survive in a path, but an external id may hold `/`, `?` or `#`.
    return quote(catalog_id(external_id), safe="")


@dataclass(frozen=True)
class _Kind:
    collection: str  # URL collection
    type: str  # JSON:API resource type
    bulk_key: str  # attribute key holding the resources in a bulk job body
    patchable_relationships: frozenset[str]


KINDS: dict[str, _Kind] = {
    "item": _Kind("catalog-items", "catalog-item", "items", frozenset({"categories"})),
    "variant": _Kind("catalog-variants", "catalog-variant", "variants", frozenset()),
    "category": _Kind("catalog-categories", "catalog-category", "categories", frozenset({"items"})),
}

# Create-only attributes: the Update schemas (CatalogItemUpdateQuery etc.) do not list them, and
# Klaviyo rejects attributes it does not know.
_CREATE_ONLY = ("external_id", "integration_type", "catalog_type")


def catalog_ref(kind: CatalogKind, external_id: str) -> dict[str, str]:
    """A relationship linkage: `{"type": "catalog-category", "id": "$custom:::$default:::c1"}`."""
    return {"type": KINDS[kind].type, "id": catalog_id(external_id)}


def catalog_resource(
    kind: CatalogKind,
    op: Literal["create", "update", "delete"],
    external_id: str,
    attributes: dict[str, Any] | None = None,
    relationships: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON:API resource object for one create/update/delete, as single calls and bulk jobs
    take it: create carries `external_id` and the integration/catalog types, update carries the
    compound `id` and only updatable fields, delete carries nothing but type and id."""
    spec = KINDS[kind]
    if op == "delete":
        return {"type": spec.type, "id": catalog_id(external_id)}
    attrs = dict(attributes or {})
    resource: dict[str, Any] = {"type": spec.type}
    if op == "create":
        attrs.update(external_id=external_id, integration_type="$custom", catalog_type="$default")
        rels = relationships
    elif op == "update":
        resource["id"] = catalog_id(external_id)
        for key in _CREATE_ONLY:
            attrs.pop(key, None)
        rels = {k: v for k, v in (relationships or {}).items() if k in spec.patchable_relationships}
    else:
        raise ValueError(f"unknown catalog operation {op!r}")
    resource["attributes"] = attrs
    if rels:
        resource["relationships"] = rels
    return resource


class CatalogMixin(KlaviyoTransport):
    """CRUD and upsert for catalog objects, generic over kind plus named per-kind methods."""

    # -- generic ---------------------------------------------------------------------------------

    def create_catalog_object(
        self, kind: CatalogKind, external_id: str, attributes: dict[str, Any],
        relationships: dict[str, Any] | None = None, *, deadline: Deadline = Deadline.never(),
    ) -> dict[str, Any]:
        body = {"data": catalog_resource(kind, "create", external_id, attributes, relationships)}
        resp = self.request("POST", f"/api/{KINDS[kind].collection}", json=body, deadline=deadline)
        return (resp or {}).get("data") or {}

    def update_catalog_object(
        self, kind: CatalogKind, external_id: str, attributes: dict[str, Any],
        relationships: dict[str, Any] | None = None, *, deadline: Deadline = Deadline.never(),
    ) -> dict[str, Any]:
        body = {"data": catalog_resource(kind, "update", external_id, attributes, relationships)}
        path = f"/api/{KINDS[kind].collection}/{_path_id(external_id)}"
        resp = self.request("PATCH", path, json=body, deadline=deadline)
        return (resp or {}).get("data") or {}

    def delete_catalog_object(
        self, kind: CatalogKind, external_id: str, *, deadline: Deadline = Deadline.never()
    ) -> bool:
        """True if deleted, False if it was not there (already gone counts as done)."""
        path = f"/api/{KINDS[kind].collection}/{_path_id(external_id)}"
        try:
            self.request("DELETE", path, deadline=deadline)
        except KlaviyoError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def get_catalog_object(
        self, kind: CatalogKind, external_id: str, *, deadline: Deadline = Deadline.never()
    ) -> dict[str, Any] | None:
        path = f"/api/{KINDS[kind].collection}/{_path_id(external_id)}"
        try:
            resp = self.request("GET", path, deadline=deadline)
        except KlaviyoError as exc:
            if exc.status == 404:
                return None
            raise
        return (resp or {}).get("data")

    def iter_catalog_objects(
        self, kind: CatalogKind, filter: str | None = None, *,
        deadline: Deadline = Deadline.never(),
    ) -> Iterator[dict[str, Any]]:
        params = {"filter": filter} if filter else None
        return self.paginate(f"/api/{KINDS[kind].collection}", params=params, deadline=deadline)

    def upsert_catalog_object(
        self, kind: CatalogKind, external_id: str, attributes: dict[str, Any],
        relationships: dict[str, Any] | None = None, *, deadline: Deadline = Deadline.never(),
    ) -> dict[str, Any]:
        """PATCH, and create it if it does not exist yet.

        PATCH first because most messages update existing objects. If another instance creates
        the object between our 404 and our POST, the POST answers 409 and a second PATCH wins.
        """
        try:
            return self.update_catalog_object(
                kind, external_id, attributes, relationships, deadline=deadline
            )
        except KlaviyoError as exc:
            if exc.status != 404:
                raise
        try:
            return self.create_catalog_object(
                kind, external_id, attributes, relationships, deadline=deadline
            )
        except KlaviyoError as exc:
            if exc.status != 409:
                raise
        return self.update_catalog_object(
            kind, external_id, attributes, relationships, deadline=deadline
        )

    # -- named per kind ----------------------------------------------------------------------------

    def create_catalog_item(self, external_id: str, attributes: dict[str, Any],
                            relationships: dict[str, Any] | None = None, *,
                            deadline: Deadline = Deadline.never()) -> dict[str, Any]:
        return self.create_catalog_object("item", external_id, attributes, relationships,
                                          deadline=deadline)

    def update_catalog_item(self, external_id: str, attributes: dict[str, Any],
                            relationships: dict[str, Any] | None = None, *,
                            deadline: Deadline = Deadline.never()) -> dict[str, Any]:
        return self.update_catalog_object("item", external_id, attributes, relationships,
                                          deadline=deadline)

    def upsert_catalog_item(self, external_id: str, attributes: dict[str, Any],
                            relationships: dict[str, Any] | None = None, *,
                            deadline: Deadline = Deadline.never()) -> dict[str, Any]:
        return self.upsert_catalog_object("item", external_id, attributes, relationships,
                                          deadline=deadline)

    def delete_catalog_item(self, external_id: str, *,
                            deadline: Deadline = Deadline.never()) -> bool:
        return self.delete_catalog_object("item", external_id, deadline=deadline)

    def get_catalog_item(self, external_id: str, *,
                         deadline: Deadline = Deadline.never()) -> dict[str, Any] | None:
        return self.get_catalog_object("item", external_id, deadline=deadline)

    def iter_catalog_items(self, filter: str | None = None, *,
                           deadline: Deadline = Deadline.never()) -> Iterator[dict[str, Any]]:
        return self.iter_catalog_objects("item", filter, deadline=deadline)

    def iter_item_variants(self, item_external_id: str, *,
                           deadline: Deadline = Deadline.never()) -> Iterator[dict[str, Any]]:
        """Variants of one item; an item that does not exist has none."""
        path = f"/api/catalog-items/{_path_id(item_external_id)}/variants"
        try:
            yield from self.paginate(path, deadline=deadline)
        except KlaviyoError as exc:
            if exc.status != 404:
                raise

    def create_catalog_variant(self, external_id: str, attributes: dict[str, Any],
                               relationships: dict[str, Any] | None = None, *,
                               deadline: Deadline = Deadline.never()) -> dict[str, Any]:
        return self.create_catalog_object("variant", external_id, attributes, relationships,
                                          deadline=deadline)

    def update_catalog_variant(self, external_id: str, attributes: dict[str, Any],
                               relationships: dict[str, Any] | None = None, *,
                               deadline: Deadline = Deadline.never()) -> dict[str, Any]:
        return self.update_catalog_object("variant", external_id, attributes, relationships,
                                          deadline=deadline)

    def upsert_catalog_variant(self, external_id: str, attributes: dict[str, Any],
                               relationships: dict[str, Any] | None = None, *,
                               deadline: Deadline = Deadline.never()) -> dict[str, Any]:
        return self.upsert_catalog_object("variant", external_id, attributes, relationships,
                                          deadline=deadline)

    def delete_catalog_variant(self, external_id: str, *,
                               deadline: Deadline = Deadline.never()) -> bool:
        return self.delete_catalog_object("variant", external_id, deadline=deadline)

    def get_catalog_variant(self, external_id: str, *,
                            deadline: Deadline = Deadline.never()) -> dict[str, Any] | None:
        return self.get_catalog_object("variant", external_id, deadline=deadline)

    def iter_catalog_variants(self, filter: str | None = None, *,
                              deadline: Deadline = Deadline.never()) -> Iterator[dict[str, Any]]:
        return self.iter_catalog_objects("variant", filter, deadline=deadline)

    def create_catalog_category(self, external_id: str, attributes: dict[str, Any],
                                relationships: dict[str, Any] | None = None, *,
                                deadline: Deadline = Deadline.never()) -> dict[str, Any]:
        return self.create_catalog_object("category", external_id, attributes, relationships,
                                          deadline=deadline)

    def update_catalog_category(self, external_id: str, attributes: dict[str, Any],
                                relationships: dict[str, Any] | None = None, *,
                                deadline: Deadline = Deadline.never()) -> dict[str, Any]:
        return self.update_catalog_object("category", external_id, attributes, relationships,
                                          deadline=deadline)

    def upsert_catalog_category(self, external_id: str, attributes: dict[str, Any],
                                relationships: dict[str, Any] | None = None, *,
                                deadline: Deadline = Deadline.never()) -> dict[str, Any]:
        return self.upsert_catalog_object("category", external_id, attributes, relationships,
                                          deadline=deadline)

    def delete_catalog_category(self, external_id: str, *,
                                deadline: Deadline = Deadline.never()) -> bool:
        return self.delete_catalog_object("category", external_id, deadline=deadline)

    def get_catalog_category(self, external_id: str, *,
                             deadline: Deadline = Deadline.never()) -> dict[str, Any] | None:
        return self.get_catalog_object("category", external_id, deadline=deadline)

    def iter_catalog_categories(self, filter: str | None = None, *,
                                deadline: Deadline = Deadline.never()
                                ) -> Iterator[dict[str, Any]]:
        return self.iter_catalog_objects("category", filter, deadline=deadline)
