"""Catalog items, variants and categories: CRUD with required-attribute checks, filters, paging."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tests.fakes.klaviyo.errors import ApiFailure, _bad_filter, _invalid, _not_found, error_object
from tests.fakes.klaviyo.filters import parse_filter
from tests.fakes.klaviyo.state import CATALOG_PREFIX, _now

if TYPE_CHECKING:
    from tests.fakes.klaviyo.base import FakeApi
else:
    FakeApi = object  # the type checker's view of the sibling families; nothing at run time

MAX_CATALOG_BULK = 100


@dataclass(frozen=True)
class _CatalogSpec:
    kind: str
    collection: str
    type: str
    bulk_key: str
    create_attributes: frozenset[str]
    required: tuple[str, ...]
    patch_attributes: frozenset[str]
    create_relationships: frozenset[str]
    patch_relationships: frozenset[str]
    strings: frozenset[str]
    numbers: frozenset[str]


_ITEM_PATCH = frozenset({
    "title", "price", "description", "url", "image_full_url", "image_thumbnail_url", "images",
    "custom_metadata", "published",
})
_VARIANT_PATCH = frozenset({
    "title", "description", "sku", "inventory_policy", "inventory_quantity", "price", "url",
    "image_full_url", "image_thumbnail_url", "images", "custom_metadata", "published",
})
_TYPES = frozenset({"external_id", "integration_type", "catalog_type"})

CATALOG: dict[str, _CatalogSpec] = {
    "item": _CatalogSpec(
        "item", "catalog-items", "catalog-item", "items",
        _ITEM_PATCH | _TYPES, ("external_id", "title", "description", "url"), _ITEM_PATCH,
        frozenset({"categories"}), frozenset({"categories"}),
        frozenset({"external_id", "title", "description", "url", "image_full_url",
                   "image_thumbnail_url"}),
        frozenset({"price"}),
    ),
    "variant": _CatalogSpec(
        "variant", "catalog-variants", "catalog-variant", "variants",
        _VARIANT_PATCH | _TYPES,
        ("external_id", "title", "description", "sku", "inventory_quantity", "price", "url"),
        _VARIANT_PATCH, frozenset({"item"}), frozenset(),
        frozenset({"external_id", "title", "description", "sku", "url", "image_full_url",
                   "image_thumbnail_url"}),
        frozenset({"price", "inventory_quantity"}),
    ),
    "category": _CatalogSpec(
        "category", "catalog-categories", "catalog-category", "categories",
        frozenset({"name"}) | _TYPES, ("external_id", "name"), frozenset({"name"}),
        frozenset({"items"}), frozenset({"items"}),
        frozenset({"external_id", "name"}), frozenset(),
    ),
}
_BY_COLLECTION = {spec.collection: spec for spec in CATALOG.values()}
_CATALOG_JOB_RE = re.compile(r"^catalog-(item|variant|category)-bulk-(create|update|delete)-jobs$")




class Catalog(FakeApi):
    """Mixin of FakeKlaviyo: state `items`, `variants`, `categories`."""

    items: dict[str, dict[str, Any]]
    variants: dict[str, dict[str, Any]]
    categories: dict[str, dict[str, Any]]
    page_size: int

    def catalog_state(self, kind: str) -> dict[str, dict[str, Any]]:
        return {"item": self.items, "variant": self.variants, "category": self.categories}[kind]


    def _catalog_resource(self, spec: _CatalogSpec, obj: dict[str, Any]) -> dict[str, Any]:
        self_link = f"{self.url}/api/{spec.collection}/{quote(obj['id'], safe='')}/"
        return {"type": spec.type, "id": obj["id"],
                "attributes": json.loads(json.dumps(obj["attributes"])),
                "links": {"self": self_link}}

    def _validate_catalog(self, spec: _CatalogSpec, op: str, resource: Any, base: str,
                          path_id: str | None = None) -> None:
        if not isinstance(resource, dict) or resource.get("type") != spec.type:
            raise _invalid(f"{base}/type", f"The resource type must be '{spec.type}'.")
        if op == "delete":
            if not isinstance(resource.get("id"), str):
                raise _invalid(f"{base}/id", "id is required.")
            return
        if op == "update":
            if not isinstance(resource.get("id"), str):
                raise _invalid(f"{base}/id", "id is required.")
            if path_id is not None and resource["id"] != path_id:
                raise ApiFailure(409, [error_object(
                    409, "conflict", "Conflict.", "The id in the body does not match the URL.",
                    pointer=f"{base}/id")])
        elif "id" in resource:
            raise _invalid(f"{base}/id", "id is not allowed when creating.")
        attrs = resource.get("attributes")
        if not isinstance(attrs, dict):
            raise _invalid(f"{base}/attributes", "attributes are required.")
        allowed = spec.create_attributes if op == "create" else spec.patch_attributes
        for key in attrs:
            if key not in allowed:
                raise _invalid(f"{base}/attributes/{key}",
                               f"'{key}' is not a valid field for the resource '{spec.type}'.")
        if op == "create":
            for key in spec.required:
                if attrs.get(key) is None:
                    raise _invalid(f"{base}/attributes/{key}", f"'{key}' is a required field.")
            if attrs.get("integration_type", "$custom") != "$custom":
                raise _invalid(f"{base}/attributes/integration_type",
                               "Only '$custom' is supported.")
            if attrs.get("catalog_type", "$default") != "$default":
                raise _invalid(f"{base}/attributes/catalog_type", "Only '$default' is supported.")
        for key, value in attrs.items():
            if value is None:
                continue
            bad = ((key in spec.strings and not isinstance(value, str))
                   or (key in spec.numbers and (isinstance(value, bool)
                                                or not isinstance(value, (int, float))))
                   or (key == "published" and not isinstance(value, bool))
                   or (key == "custom_metadata" and not isinstance(value, dict))
                   or (key == "images" and not (isinstance(value, list)
                                                and all(isinstance(i, str) for i in value)))
                   or (key == "inventory_policy" and value not in (0, 1, 2)))
            if bad:
                raise _invalid(f"{base}/attributes/{key}", f"'{key}' has an invalid value.")
        rels = resource.get("relationships") or {}
        if not isinstance(rels, dict):
            raise _invalid(f"{base}/relationships", "relationships must be an object.")
        allowed_rels = spec.create_relationships if op == "create" else spec.patch_relationships
        for key, rel in rels.items():
            if key not in allowed_rels:
                raise _invalid(f"{base}/relationships/{key}",
                               f"'{key}' is not a valid relationship here.")
            linkage = rel.get("data") if isinstance(rel, dict) else None
            many = key != "item"
            entries = linkage if many and isinstance(linkage, list) else [linkage]
            want = {"categories": "catalog-category", "items": "catalog-item",
                    "item": "catalog-item"}[key]
            if (many and not isinstance(linkage, list)) or not all(
                    isinstance(e, dict) and e.get("type") == want and isinstance(e.get("id"), str)
                    for e in entries):
                raise _invalid(f"{base}/relationships/{key}/data", "Invalid relationship data.")
        if spec.kind == "variant" and op == "create" and not (rels.get("item") or {}).get("data"):
            raise _invalid(f"{base}/relationships/item", "A variant needs its item.")

    def _catalog_apply(self, spec: _CatalogSpec, op: str, resource: dict[str, Any],
                       pointer: str) -> dict[str, Any] | None:
        store = self.catalog_state(spec.kind)
        rels = resource.get("relationships") or {}
        now = _now()
        if op == "create":
            attrs = dict(resource["attributes"])
            cid = CATALOG_PREFIX + attrs["external_id"]
            if cid in store:
                raise ApiFailure(409, [error_object(
                    409, "conflict", "Conflict.", f"A {spec.type} with this id already exists.",
                    pointer=pointer)])
            if spec.kind == "variant" and rels["item"]["data"]["id"] not in self.items:
                raise ApiFailure(400, [error_object(
                    400, "invalid", "Invalid input.", "The variant's catalog item does not exist.",
                    pointer=f"{pointer.rsplit('/attributes', 1)[0]}/relationships/item/data/id")])
            attrs.setdefault("integration_type", "$custom")
            attrs.setdefault("catalog_type", "$default")
            if spec.kind != "category":
                attrs.setdefault("published", True)
            if spec.kind == "variant":
                attrs.setdefault("inventory_policy", 0)
            attrs.update(created=now, updated=now)
            relationships: dict[str, Any] = {}
            if spec.kind == "item":
                relationships["categories"] = [e["id"] for e in
                                               (rels.get("categories") or {}).get("data") or []]
            elif spec.kind == "variant":
                relationships["item"] = rels["item"]["data"]["id"]
            created = {"type": spec.type, "id": cid, "attributes": attrs,
                       "relationships": relationships}
            store[cid] = created
            if spec.kind == "category" and "items" in rels:
                self._set_category_items(cid, [e["id"] for e in rels["items"]["data"]])
            return created
        cid = resource["id"]
        obj = store.get(cid)
        if obj is None:
            raise ApiFailure(404, [error_object(404, "not_found", "Not found.",
                                                f"{spec.type} {cid} does not exist.",
                                                pointer=pointer)])
        if op == "delete":
            del store[cid]
            if spec.kind == "category":
                self._set_category_items(cid, [])
            return None
        obj["attributes"].update(resource["attributes"])
        obj["attributes"]["updated"] = now
        if spec.kind == "item" and "categories" in rels:
            obj["relationships"]["categories"] = [e["id"] for e in rels["categories"]["data"]]
        if spec.kind == "category" and "items" in rels:
            self._set_category_items(cid, [e["id"] for e in rels["items"]["data"]])
        return obj

    def _set_category_items(self, category_id: str, item_ids: list[str]) -> None:
        for iid, item in self.items.items():
            cats = item["relationships"].setdefault("categories", [])
            if iid in item_ids and category_id not in cats:
                cats.append(category_id)
            elif iid not in item_ids and category_id in cats:
                cats.remove(category_id)

    def _catalog_create(self, spec: _CatalogSpec, body: Any) -> tuple[int, Any, dict[str, str]]:
        data = body.get("data") if isinstance(body, dict) else None
        self._validate_catalog(spec, "create", data, "/data")
        assert isinstance(data, dict)  # _validate_catalog refused anything else
        obj = self._catalog_apply(spec, "create", data, "/data/attributes/external_id")
        assert obj is not None  # only a delete applies to nothing
        return 201, {"data": self._catalog_resource(spec, obj)}, {}

    def _catalog_patch(self, spec: _CatalogSpec, cid: str, body: Any
                       ) -> tuple[int, Any, dict[str, str]]:
        if cid not in self.catalog_state(spec.kind):
            raise _not_found(f"{spec.type} {cid} does not exist.")
        data = body.get("data") if isinstance(body, dict) else None
        self._validate_catalog(spec, "update", data, "/data", path_id=cid)
        assert isinstance(data, dict)  # _validate_catalog refused anything else
        obj = self._catalog_apply(spec, "update", data, "/data/id")
        assert obj is not None  # only a delete applies to nothing
        return 200, {"data": self._catalog_resource(spec, obj)}, {}

    def _catalog_delete(self, spec: _CatalogSpec, cid: str) -> tuple[int, Any, dict[str, str]]:
        if cid not in self.catalog_state(spec.kind):
            raise _not_found(f"{spec.type} {cid} does not exist.")
        self._catalog_apply(spec, "delete", {"type": spec.type, "id": cid}, "/data/id")
        return 204, None, {}

    def _catalog_list(self, spec: _CatalogSpec, query: Any, path: str,
                      only: Any = None) -> tuple[int, Any, dict[str, str]]:
        selected = [o for o in self.catalog_state(spec.kind).values() if only is None or only(o)]
        expression = query.get("filter")
        if expression:
            for op, fld, value in parse_filter(expression):
                selected = [o for o in selected if self._catalog_filter(spec, op, fld, value, o)]
        extra = {k: v for k, v in query.items() if k != "page[cursor]"}
        return self._paged([self._catalog_resource(spec, o) for o in selected], query, path,
                           self.page_size, extra)

    def _catalog_filter(self, spec: _CatalogSpec, op: str, fld: str, value: Any,
                        obj: dict[str, Any]) -> bool:
        attrs, rels = obj["attributes"], obj["relationships"]
        if op == "any" and fld == "ids" and isinstance(value, list):
            return obj["id"] in value
        if op == "equals" and fld == "published" and spec.kind != "category":
            return attrs.get("published") == value
        if op == "contains" and fld == ("name" if spec.kind == "category" else "title"):
            return str(value) in str(attrs.get(fld) or "")
        if op == "equals" and fld == "category.id" and spec.kind == "item":
            return value in rels.get("categories", [])
        if op == "equals" and fld == "item.id" and spec.kind == "variant":
            return rels.get("item") == value
        if op == "equals" and fld == "item.id" and spec.kind == "category":
            item = self.items.get(value)
            if not item:
                return False
            return obj["id"] in item["relationships"].get("categories", [])
        if op == "equals" and fld == "sku" and spec.kind == "variant":
            return attrs.get("sku") == value
        raise _bad_filter(f"Filter {op}({fld}) is not supported on {spec.collection}.")
