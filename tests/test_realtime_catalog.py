"""Catalog sync end to end: CloudEvents → realtime function → commercetools and Klaviyo fakes.

Categories, products (items + variants) and inventory, with the exact Klaviyo requests made.
A product's variant changes go as catalog variant bulk jobs from 3 of a kind (create, update,
delete) on, fewer as single requests.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from shared.processors import catalog as catalog_processor
from tests.fakes.klaviyo import error_object

P = "$custom:::$default:::"  # Klaviyo's compound catalog id prefix
CATALOG_ENV = {
    "PRODUCT_URL_TEMPLATE": "https://shop.example/p/{slug}?sku={sku}",
    "PREFERRED_CURRENCY": "CHF",
    "PREFERRED_LOCALE": "en",
}
_seq = itertools.count(1)


@pytest.fixture
def realtime(make_realtime: Callable[..., Any]) -> Any:
    return make_realtime(**CATALOG_ENV)


# -- deliveries ------------------------------------------------------------------------------------


def message(type_id: str, resource_id: str, message_type: str, **body: Any) -> dict[str, Any]:
    seq = next(_seq)
    return {
        "notificationType": "Message", "projectKey": "test-project", "id": f"msg-{seq}",
        "version": 1, "sequenceNumber": seq, "resource": {"typeId": type_id, "id": resource_id},
        "resourceVersion": seq, "type": message_type, "createdAt": "2026-01-01T00:00:00.000Z",
        "lastModifiedAt": "2026-01-01T00:00:00.000Z", **body,
    }


def change(notification: str, type_id: str, resource_id: str, version: int = 2,
           identifiers: dict[str, Any] | None = None) -> dict[str, Any]:
    delivery = {
        "notificationType": notification, "projectKey": "test-project",
        "resource": {"typeId": type_id, "id": resource_id}, "version": version,
        "modifiedAt": "2026-01-02T00:00:00.000Z",
    }
    if notification == "ResourceUpdated":
        delivery["oldVersion"] = version - 1
    if identifiers is not None:
        delivery["resourceUserProvidedIdentifiers"] = identifiers
    return delivery


# -- commercetools documents -----------------------------------------------------------------------


def category_doc(cid: str, name: str, *ancestors: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": cid, "version": 1, "key": cid, "name": {"en": name}, "slug": {"en": cid},
        "ancestors": [{"typeId": "category", "id": a} for a in ancestors],
        **({"parent": {"typeId": "category", "id": ancestors[-1]}} if ancestors else {}),
        **extra,
    }


def chf(cents: int) -> dict[str, Any]:
    return {"value": {"type": "centPrecision", "currencyCode": "CHF", "centAmount": cents,
                      "fractionDigits": 2}}


def variant_doc(number: int, sku: str | None, quantity: int | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": number, "prices": [chf(1000 + number)],
        "images": [{"url": f"https://img.example/{number}.jpg", "dimensions": {"w": 1, "h": 1}}],
        "availability": {"isOnStock": True,
                         "availableQuantity": number if quantity is None else quantity},
    }
    if sku is not None:
        doc["sku"] = sku
    return doc


def product_doc(pid: str = "p-1", skus: tuple[str | None, ...] = ("SKU-1", "SKU-2"), *,
                published: bool = True, name: str = "Blue Jeans",
                categories: tuple[str, ...] = ("c-jeans",),
                stock: dict[str, int] | None = None) -> dict[str, Any]:
    """Variant n has price CHF 10.0n and, unless `stock` says otherwise, n in stock."""
    variants = [variant_doc(i + 1, sku, (stock or {}).get(sku or ""))
                for i, sku in enumerate(skus)]
    current = {
        "name": {"en": name, "de": "Blaue Jeans"}, "description": {"en": "Denim"},
        "slug": {"en": "blue-jeans"},
        "categories": [{"typeId": "category", "id": c} for c in categories],
        "masterVariant": variants[0], "variants": variants[1:],
    }
    return {"id": pid, "key": pid, "version": 1,
            "masterData": {"published": published, "current": current, "staged": current,
                           "hasStagedChanges": False}}


def inventory_doc(eid: str, sku: str, quantity: int, channel: str | None = None
                  ) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": eid, "version": 1, "sku": sku, "quantityOnStock": quantity,
                           "availableQuantity": quantity}
    if channel:
        doc["supplyChannel"] = {"typeId": "channel", "id": channel}
    return doc


def published(pid: str = "p-1") -> dict[str, Any]:
    return message("product", pid, "ProductPublished", scope="All")


def unpublished(pid: str = "p-1") -> dict[str, Any]:
    return message("product", pid, "ProductUnpublished")


# -- Klaviyo observations --------------------------------------------------------------------------


def calls(klaviyo: Any, since: int = 0) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in list(klaviyo.requests)[since:]]


def writes(klaviyo: Any, since: int = 0) -> list[tuple[str, str]]:
    return [c for c in calls(klaviyo, since) if c[0] != "GET"]


def names(klaviyo: Any) -> dict[str, str]:
    return {cid.removeprefix(P): c["attributes"]["name"] for cid, c in klaviyo.categories.items()}


def variant_skus(klaviyo: Any, pid: str = "p-1") -> set[str]:
    return {v["attributes"]["sku"] for v in klaviyo.variants.values()
            if v["relationships"]["item"] == P + pid}


def catalog_filter(*external_ids: str) -> str:
    return "any(ids,[" + ",".join(f'"{P}{e}"' for e in external_ids) + "])"


def job_path(op: str) -> str:
    return f"/api/catalog-variant-bulk-{op}-jobs"


def job_posts(klaviyo: Any, op: str, since: int = 0) -> list[Any]:
    """The variant bulk job requests of this operation (create/update/delete) since `since`."""
    return [r for r in list(klaviyo.requests)[since:]
            if r.method == "POST" and r.path == job_path(op)]


def job_resources(request: Any) -> list[dict[str, Any]]:
    return request.json["data"]["attributes"]["variants"]["data"]


def job_ids(klaviyo: Any, op: str) -> list[str]:
    """Ids of the variant jobs of this operation Klaviyo accepted, in the order started."""
    return [jid for jid, job in klaviyo.jobs.items()
            if job["type"] == f"catalog-variant-bulk-{op}-job"]


def polls(op: str, job_id: str, times: int = 3) -> list[tuple[str, str]]:
    """A job polled until complete (the fake answers queued, processing, complete)."""
    return [("GET", f"{job_path(op)}/{job_id}")] * times


def single_variant_writes(klaviyo: Any, since: int = 0) -> list[tuple[str, str]]:
    return [c for c in writes(klaviyo, since) if c[1].startswith("/api/catalog-variants")]


# -- categories ------------------------------------------------------------------------------------


def add_tree(ct: Any) -> None:
    ct.add("categories", category_doc("c-women", "Women"))
    ct.add("categories", category_doc("c-pants", "Pants", "c-women"))
    ct.add("categories", category_doc("c-jeans", "Jeans", "c-women", "c-pants"))
    ct.add("categories", category_doc("c-men", "Men"))


def test_category_created(realtime: Any, ct: Any, klaviyo: Any) -> None:
    add_tree(ct)

    assert realtime.deliver(message("category", "c-jeans", "CategoryCreated")) == 200

    assert calls(klaviyo) == [("GET", "/api/catalog-categories"),
                              ("POST", "/api/catalog-categories")]
    lookup, create = klaviyo.requests
    assert lookup.query == {"filter": catalog_filter("c-jeans")}
    assert create.json == {"data": {"type": "catalog-category", "attributes": {
        "external_id": "c-jeans", "name": "Women > Pants > Jeans",
        "integration_type": "$custom", "catalog_type": "$default"}}}
    # The category and its subtree in one query, ancestors expanded; after the write the same
    # query once more, to confirm nothing moved on meanwhile.
    subtree, confirm = ct.api_requests("categories")
    assert subtree.param("expand") == "ancestors[*]"
    assert subtree.query["where"] == ['id = "c-jeans" or ancestors(id = "c-jeans")']
    assert confirm.query == subtree.query


def test_category_resource_created_change(realtime: Any, ct: Any, klaviyo: Any) -> None:
    add_tree(ct)

    assert realtime.deliver(change("ResourceCreated", "category", "c-women", version=1)) == 200

    # A new category with descendants already synced by their own messages: all written.
    assert writes(klaviyo) == [("POST", "/api/catalog-categories")] * 3
    assert names(klaviyo) == {"c-women": "Women", "c-pants": "Women > Pants",
                              "c-jeans": "Women > Pants > Jeans"}


def test_category_renamed_updates_descendant_breadcrumbs(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    add_tree(ct)
    for cid in ("c-women", "c-pants", "c-jeans", "c-men"):
        assert realtime.deliver(message("category", cid, "CategoryCreated")) == 200
    ct.add("categories", category_doc("c-women", "Ladies"))
    mark = len(klaviyo.requests)

    assert realtime.deliver(change("ResourceUpdated", "category", "c-women")) == 200

    assert calls(klaviyo, mark) == [
        ("GET", "/api/catalog-categories"),
        ("PATCH", f"/api/catalog-categories/{P}c-women"),
        ("PATCH", f"/api/catalog-categories/{P}c-pants"),
        ("PATCH", f"/api/catalog-categories/{P}c-jeans"),
    ]
    assert klaviyo.requests[mark].query == {"filter": catalog_filter("c-women", "c-pants",
                                                                     "c-jeans")}
    assert klaviyo.requests[mark + 3].json == {"data": {
        "type": "catalog-category", "id": f"{P}c-jeans",
        "attributes": {"name": "Ladies > Pants > Jeans"}}}
    assert names(klaviyo) == {"c-women": "Ladies", "c-pants": "Ladies > Pants",
                              "c-jeans": "Ladies > Pants > Jeans", "c-men": "Men"}

    # A change that does not touch any name (e.g. the description) writes nothing.
    mark = len(klaviyo.requests)
    assert realtime.deliver(change("ResourceUpdated", "category", "c-women", version=3)) == 200
    assert writes(klaviyo, mark) == []


def test_category_moved_to_another_parent(realtime: Any, ct: Any, klaviyo: Any) -> None:
    add_tree(ct)
    for cid in ("c-women", "c-pants", "c-jeans", "c-men"):
        assert realtime.deliver(message("category", cid, "CategoryCreated")) == 200
    ct.add("categories", category_doc("c-pants", "Pants", "c-men"))
    ct.add("categories", category_doc("c-jeans", "Jeans", "c-men", "c-pants"))
    mark = len(klaviyo.requests)

    assert realtime.deliver(change("ResourceUpdated", "category", "c-pants")) == 200

    assert writes(klaviyo, mark) == [("PATCH", f"/api/catalog-categories/{P}c-pants"),
                                     ("PATCH", f"/api/catalog-categories/{P}c-jeans")]
    assert names(klaviyo)["c-jeans"] == "Men > Pants > Jeans"


def test_category_deleted(realtime: Any, ct: Any, klaviyo: Any) -> None:
    add_tree(ct)
    assert realtime.deliver(message("category", "c-men", "CategoryCreated")) == 200
    ct.delete("categories", "c-men")
    mark = len(klaviyo.requests)

    deleted = change("ResourceDeleted", "category", "c-men", version=3)
    assert realtime.deliver(deleted) == 200
    assert realtime.deliver(deleted) == 200  # redelivered: 404 means already gone

    assert calls(klaviyo, mark) == [("DELETE", f"/api/catalog-categories/{P}c-men")] * 2
    assert [r.status for r in klaviyo.requests[mark:]] == [204, 404]
    assert klaviyo.categories == {}


def test_created_message_for_a_deleted_category_writes_nothing(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    assert realtime.deliver(message("category", "c-gone", "CategoryCreated")) == 200
    assert klaviyo.requests == []


# -- products --------------------------------------------------------------------------------------


def expected_item(name: str = "Blue Jeans") -> dict[str, Any]:
    return {
        "external_id": "p-1", "integration_type": "$custom", "catalog_type": "$default",
        "title": name, "description": "Denim",
        "url": "https://shop.example/p/blue-jeans?sku=SKU-1",
        "price": 10.01, "published": True,
        "images": ["https://img.example/1.jpg"], "image_full_url": "https://img.example/1.jpg",
        "custom_metadata": {
            "title_json": f'{{"title_en":"{name}","title_de":"Blaue Jeans"}}',
            "slug_json": '{"slug_en":"blue-jeans"}',
            "price_json": '{"price_CHF":10.01,"price_CH":10.01,"price_LI":10.01}',
            "currency_json": '{"currency_CH":"CHF","currency_LI":"CHF"}',
        },
    }


def test_product_published_new_item_before_its_variants(
    realtime: Any, ct: Any, klaviyo: Any, caplog: Any,
) -> None:
    add_tree(ct)
    ct.add("products", product_doc(skus=("SKU-1", "SKU-2", None)))
    caplog.set_level(logging.INFO, logger="connector")

    assert realtime.deliver(published()) == 200

    # The item exists before any variant request (the reference sent them in parallel); a new
    # item has no variants to list; the variant without SKU is not sent.
    assert calls(klaviyo) == [
        ("PATCH", f"/api/catalog-items/{P}p-1"),
        ("POST", "/api/catalog-items"),
        ("POST", "/api/catalog-variants"),
        ("POST", "/api/catalog-variants"),
    ]
    assert klaviyo.requests[0].status == 404
    item_request = klaviyo.requests[1].json
    assert item_request == {"data": {
        "type": "catalog-item", "attributes": expected_item(),
        "relationships": {"categories": {"data": [
            {"type": "catalog-category", "id": f"{P}c-jeans"},
            {"type": "catalog-category", "id": f"{P}c-women"},
            {"type": "catalog-category", "id": f"{P}c-pants"},
        ]}}}}
    assert klaviyo.requests[3].json == {"data": {
        "type": "catalog-variant",
        "attributes": {
            "external_id": "SKU-2", "integration_type": "$custom", "catalog_type": "$default",
            "sku": "SKU-2", "title": "Blue Jeans", "description": "Denim",
            "url": "https://shop.example/p/blue-jeans?sku=SKU-2", "price": 10.02,
            "inventory_quantity": 2, "inventory_policy": 1, "published": True,
            "images": ["https://img.example/2.jpg"],
            "image_full_url": "https://img.example/2.jpg",
            "custom_metadata": {
                "title_json": '{"title_en":"Blue Jeans","title_de":"Blaue Jeans"}',
                "slug_json": '{"slug_en":"blue-jeans"}',
                "price_json": '{"price_CHF":10.02,"price_CH":10.02,"price_LI":10.02}',
                "currency_json": '{"currency_CH":"CHF","currency_LI":"CHF"}',
            },
        },
        "relationships": {"item": {"data": {"type": "catalog-item", "id": f"{P}p-1"}}},
    }}
    assert variant_skus(klaviyo) == {"SKU-1", "SKU-2"}
    skipped = [r for r in caplog.records if r.getMessage() == "variants without SKU not sent"]
    assert [r.__dict__["variantIds"] for r in skipped] == [[3]]
    # commercetools: the product with its categories expanded (their ancestors give the ids),
    # then once more, to confirm neither it nor its categories' ancestors moved on meanwhile.
    product_request, confirm = ct.api_requests("products")
    assert product_request.param("expand") == "masterData.current.categories[*]"
    assert confirm.param("expand") == "masterData.current.categories[*]"


def test_product_published_again_updates_adds_and_removes_variants(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    ct.add("products", product_doc(skus=("SKU-1", "SKU-2", "SKU-3")))
    assert realtime.deliver(published()) == 200
    ct.add("products", product_doc(skus=("SKU-1", "SKU-2", "SKU-4"), name="Jeans"))
    mark = len(klaviyo.requests)

    assert realtime.deliver(published()) == 200

    assert calls(klaviyo, mark) == [
        ("PATCH", f"/api/catalog-items/{P}p-1"),
        ("GET", f"/api/catalog-items/{P}p-1/variants"),
        ("PATCH", f"/api/catalog-variants/{P}SKU-1"),
        ("PATCH", f"/api/catalog-variants/{P}SKU-2"),
        ("POST", "/api/catalog-variants"),
        ("DELETE", f"/api/catalog-variants/{P}SKU-3"),
    ]
    patch = klaviyo.requests[mark].json["data"]
    expected = expected_item("Jeans")
    for key in ("external_id", "integration_type", "catalog_type"):
        expected.pop(key)
    assert patch["id"] == f"{P}p-1" and patch["attributes"] == expected
    assert variant_skus(klaviyo) == {"SKU-1", "SKU-2", "SKU-4"}
    assert klaviyo.items[f"{P}p-1"]["attributes"]["title"] == "Jeans"


def test_product_with_more_variants_than_a_page(realtime: Any, ct: Any, klaviyo: Any) -> None:
    klaviyo.page_size = 10
    skus = tuple(f"SKU-{n:03}" for n in range(1, 121))
    ct.add("products", product_doc(skus=skus))
    assert realtime.deliver(published()) == 200
    assert len(variant_skus(klaviyo)) == 120
    assert [len(job_resources(r)) for r in job_posts(klaviyo, "create")] == [100, 20]
    ct.add("products", product_doc(skus=skus[:-1]))  # the last variant was removed
    mark = len(klaviyo.requests)

    assert realtime.deliver(published()) == 200

    made = calls(klaviyo, mark)
    assert made.count(("GET", f"/api/catalog-items/{P}p-1/variants")) == 12  # every page read
    assert [c for c in made if c[0] == "POST"] == []  # nothing re-created past page 1
    assert [c for c in made if c[0] == "DELETE"] == [("DELETE",
                                                      f"/api/catalog-variants/{P}SKU-120")]
    # The item is rewritten; the 119 variants Klaviyo already holds as they are are not.
    assert sum(c[0] == "PATCH" for c in made) == 1
    assert variant_skus(klaviyo) == set(skus[:-1])


def test_redelivery_writes_only_what_klaviyo_does_not_hold_yet(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    """A product too big for one delivery's deadline finishes over redeliveries."""
    skus = tuple(f"SKU-{n:03}" for n in range(1, 41))
    ct.add("products", product_doc(skus=skus))
    assert realtime.deliver(published()) == 200
    # Klaviyo lost half the variants (as if the first delivery ran out of time half-way).
    for sku in skus[20:]:
        del klaviyo.variants[f"{P}{sku}"]
    mark = len(klaviyo.requests)

    assert realtime.deliver(published()) == 200

    # The 20 missing variants go in one bulk create job; the 20 Klaviyo holds are not rewritten.
    (job,) = job_posts(klaviyo, "create", mark)
    assert [r["attributes"]["sku"] for r in job_resources(job)] == list(skus[20:])
    assert writes(klaviyo, mark) == [("PATCH", f"/api/catalog-items/{P}p-1"),
                                     ("POST", job_path("create"))]
    assert variant_skus(klaviyo) == set(skus)


# -- product variants in bulk jobs ----------------------------------------------------------------

TEN = tuple(f"SKU-{n:02}" for n in range(1, 11))  # variant n: price CHF 10.0n, n in stock


def expected_variant(n: int, sku: str, name: str = "Blue Jeans") -> dict[str, Any]:
    """What the mapper sends for variant n of `product_doc` (create: with the create-only keys)."""
    price = (1000 + n) / 100
    return {
        "external_id": sku, "integration_type": "$custom", "catalog_type": "$default",
        "sku": sku, "title": name, "description": "Denim",
        "url": f"https://shop.example/p/blue-jeans?sku={sku}", "price": price,
        "inventory_quantity": n, "inventory_policy": 1, "published": True,
        "images": [f"https://img.example/{n}.jpg"],
        "image_full_url": f"https://img.example/{n}.jpg",
        "custom_metadata": {
            "title_json": f'{{"title_en":"{name}","title_de":"Blaue Jeans"}}',
            "slug_json": '{"slug_en":"blue-jeans"}',
            "price_json": f'{{"price_CHF":{price},"price_CH":{price},"price_LI":{price}}}',
            "currency_json": '{"currency_CH":"CHF","currency_LI":"CHF"}',
        },
    }


def held(klaviyo: Any, sku: str) -> dict[str, Any]:
    """The attributes Klaviyo holds for the variant, without what Klaviyo itself sets."""
    attributes = dict(klaviyo.variants[P + sku]["attributes"])
    for key in ("created", "updated"):
        attributes.pop(key)
    return attributes


def publish_ten(realtime: Any, ct: Any, klaviyo: Any) -> int:
    """p-1 with the 10 variants TEN in Klaviyo; returns a mark."""
    ct.add("products", product_doc(skus=TEN))
    assert realtime.deliver(published()) == 200
    assert variant_skus(klaviyo) == set(TEN)
    return len(klaviyo.requests)


def test_new_product_variants_created_in_one_bulk_job(
    realtime: Any, ct: Any, klaviyo: Any, caplog: Any,
) -> None:
    ct.add("products", product_doc(skus=TEN))
    caplog.set_level(logging.INFO, logger="connector")

    assert realtime.deliver(published()) == 200

    # The item first (a variant needs it), then one job with all 10 variants, polled until
    # Klaviyo reports it complete: 6 requests instead of 12.
    (job_id,) = job_ids(klaviyo, "create")
    assert calls(klaviyo) == [
        ("PATCH", f"/api/catalog-items/{P}p-1"),
        ("POST", "/api/catalog-items"),
        ("POST", job_path("create")),
        *polls("create", job_id),
    ]
    assert klaviyo.jobs[job_id]["polls"] == 3  # queued, processing, complete
    (job,) = job_posts(klaviyo, "create")
    assert job.json["data"]["type"] == "catalog-variant-bulk-create-job"
    item_ref = {"item": {"data": {"type": "catalog-item", "id": f"{P}p-1"}}}
    assert job_resources(job) == [
        {"type": "catalog-variant", "attributes": expected_variant(n, sku),
         "relationships": item_ref}
        for n, sku in enumerate(TEN, start=1)]
    for n, sku in enumerate(TEN, start=1):
        assert held(klaviyo, sku) == expected_variant(n, sku)
        assert klaviyo.variants[P + sku]["relationships"] == {"item": f"{P}p-1"}
    (synced,) = [r for r in caplog.records if r.getMessage() == "product synced"]
    assert (synced.__dict__["variantsWritten"], synced.__dict__["variantJobs"]) == (10, 1)


def test_republish_with_every_variant_edited_is_one_bulk_update_job(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    mark = publish_ten(realtime, ct, klaviyo)
    ct.add("products", product_doc(skus=TEN, name="Jeans"))

    assert realtime.deliver(published()) == 200

    (job_id,) = job_ids(klaviyo, "update")
    assert calls(klaviyo, mark) == [
        ("PATCH", f"/api/catalog-items/{P}p-1"),
        ("GET", f"/api/catalog-items/{P}p-1/variants"),
        ("POST", job_path("update")),
        *polls("update", job_id),
    ]
    (job,) = job_posts(klaviyo, "update", mark)
    # Updates carry the compound id and only updatable fields (no create-only keys, no item).
    first = expected_variant(1, "SKU-01", name="Jeans")
    for key in ("external_id", "integration_type", "catalog_type"):
        first.pop(key)
    assert job_resources(job)[0] == {"type": "catalog-variant", "id": f"{P}SKU-01",
                                     "attributes": first}
    assert [r["id"] for r in job_resources(job)] == [P + sku for sku in TEN]
    for n, sku in enumerate(TEN, start=1):
        assert held(klaviyo, sku) == expected_variant(n, sku, name="Jeans")


@pytest.mark.parametrize("edited", [1, 2, 3], ids=["1-edited", "2-edited", "3-edited"])
def test_republish_with_few_variants_edited_uses_single_requests(
    realtime: Any, ct: Any, klaviyo: Any, edited: int,
) -> None:
    mark = publish_ten(realtime, ct, klaviyo)
    new_stock = {sku: 90 + n for n, sku in enumerate(TEN[:edited])}
    ct.add("products", product_doc(skus=TEN, stock=new_stock))

    assert realtime.deliver(published()) == 200

    if edited < 3:  # below the threshold: one PATCH each, no job
        assert calls(klaviyo, mark) == [
            ("PATCH", f"/api/catalog-items/{P}p-1"),
            ("GET", f"/api/catalog-items/{P}p-1/variants"),
            *[("PATCH", f"/api/catalog-variants/{P}{sku}") for sku in TEN[:edited]],
        ]
        assert job_ids(klaviyo, "update") == []
    else:  # from 3 on, one job
        (job,) = job_posts(klaviyo, "update", mark)
        assert [r["id"] for r in job_resources(job)] == [P + sku for sku in TEN[:3]]
        assert single_variant_writes(klaviyo, mark) == []
    assert {sku: stock(klaviyo, sku) for sku in TEN} == {
        sku: new_stock.get(sku, n) for n, sku in enumerate(TEN, start=1)}


def test_product_losing_five_variants_deletes_them_in_one_bulk_job(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    mark = publish_ten(realtime, ct, klaviyo)
    ct.add("products", product_doc(skus=TEN[:5]))

    assert realtime.deliver(published()) == 200

    (job_id,) = job_ids(klaviyo, "delete")
    assert calls(klaviyo, mark) == [
        ("PATCH", f"/api/catalog-items/{P}p-1"),
        ("GET", f"/api/catalog-items/{P}p-1/variants"),
        ("POST", job_path("delete")),
        *polls("delete", job_id),
    ]
    (job,) = job_posts(klaviyo, "delete", mark)
    assert job_resources(job) == [{"type": "catalog-variant", "id": P + sku} for sku in TEN[5:]]
    assert variant_skus(klaviyo) == set(TEN[:5])


def test_creates_updates_and_deletes_each_choose_bulk_or_single(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    mark = publish_ten(realtime, ct, klaviyo)
    # 4 removed (a job), 3 added (a job), 2 edited (single PATCHes), 4 unchanged.
    skus = TEN[:6] + ("NEW-1", "NEW-2", "NEW-3")
    ct.add("products", product_doc(skus=skus, stock={"SKU-01": 50, "SKU-02": 60}))

    assert realtime.deliver(published()) == 200

    assert [len(job_resources(r)) for r in job_posts(klaviyo, "create", mark)] == [3]
    assert [len(job_resources(r)) for r in job_posts(klaviyo, "delete", mark)] == [4]
    assert job_posts(klaviyo, "update", mark) == []
    assert single_variant_writes(klaviyo, mark) == [
        ("PATCH", f"/api/catalog-variants/{P}SKU-01"),
        ("PATCH", f"/api/catalog-variants/{P}SKU-02")]
    assert variant_skus(klaviyo) == set(skus)
    assert (stock(klaviyo, "SKU-01"), stock(klaviyo, "SKU-02"), stock(klaviyo, "NEW-3")) == (
        50, 60, 9)


def test_more_than_100_variants_go_in_several_jobs(
    make_realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    realtime = make_realtime(**CATALOG_ENV, REALTIME_DEADLINE_SECONDS="30")
    skus = tuple(f"SKU-{n:03}" for n in range(1, 251))
    ct.add("products", product_doc(skus=skus))

    assert realtime.deliver(published()) == 200

    jobs = job_posts(klaviyo, "create")
    assert [len(job_resources(r)) for r in jobs] == [100, 100, 50]  # ≤ 100 a job
    assert [r["attributes"]["sku"] for job in jobs for r in job_resources(job)] == list(skus)
    assert all(job["polls"] == 3 for job in klaviyo.jobs.values())  # each polled to complete
    assert single_variant_writes(klaviyo) == []
    assert variant_skus(klaviyo) == set(skus)
    assert held(klaviyo, "SKU-250")["price"] == 12.5


def seed_variant(klaviyo: Any, sku: str, item: str = "p-1") -> None:
    """A variant another instance wrote meanwhile (stale values)."""
    klaviyo.variants[P + sku] = {
        "type": "catalog-variant", "id": P + sku,
        "attributes": {"external_id": sku, "sku": sku, "title": "Old", "description": "",
                       "url": "https://old.example", "price": 1.0, "inventory_quantity": 0,
                       "integration_type": "$custom", "catalog_type": "$default",
                       "published": True, "inventory_policy": 0,
                       "created": "2026-01-01T00:00:00+00:00",
                       "updated": "2026-01-01T00:00:00+00:00"},
        "relationships": {"item": P + item},
    }


def test_variant_a_job_failed_is_retried_singly(realtime: Any, ct: Any, klaviyo: Any) -> None:
    ct.add("products", product_doc(skus=TEN))
    # Another instance created SKU-03 after our item write: the new item lists no variants, so
    # SKU-03 goes in the create job, where Klaviyo refuses it (it exists by then).
    seed_variant(klaviyo, "SKU-03")

    assert realtime.deliver(published()) == 200

    (job_id,) = job_ids(klaviyo, "create")
    assert calls(klaviyo) == [
        ("PATCH", f"/api/catalog-items/{P}p-1"),
        ("POST", "/api/catalog-items"),
        ("POST", job_path("create")),
        *polls("create", job_id),
        # The failed record alone: create (409, it exists), then, as it is this item's
        # variant (not a SKU moved from another item), update.
        ("POST", "/api/catalog-variants"),
        ("GET", f"/api/catalog-items/{P}p-1/variants"),
        ("PATCH", f"/api/catalog-variants/{P}SKU-03"),
    ]
    final = klaviyo.jobs[job_id]
    assert [e["source"]["pointer"] for e in final["failures"]] == [
        "/data/attributes/variants/data/2"]
    assert [r.status for r in klaviyo.requests[-3:]] == [409, 200, 200]
    for n, sku in enumerate(TEN, start=1):
        assert held(klaviyo, sku) == expected_variant(n, sku)


def test_variant_klaviyo_refuses_fails_the_message_terminally(
    realtime: Any, ct: Any, klaviyo: Any, caplog: Any,
) -> None:
    ct.add("products", product_doc(skus=TEN))
    seed_variant(klaviyo, "SKU-03")  # fails in the job, as above …
    invalid = error_object(400, "invalid", "Invalid input.", "'price' has an invalid value.",
                           pointer="/data/attributes/price")
    # … and Klaviyo refuses it on its own too (update after the create's 409).
    klaviyo.inject(400, path=f"/api/catalog-variants/{P}SKU-03", method="PATCH",
                   errors=[invalid])
    caplog.set_level(logging.INFO, logger="connector")

    assert realtime.deliver(published()) == 200  # acknowledged: a redelivery cannot help

    pairs = zip(calls(klaviyo)[-3:], klaviyo.requests[-3:], strict=True)
    assert [(c, r.status) for c, r in pairs] == [
        (("POST", "/api/catalog-variants"), 409),
        (("GET", f"/api/catalog-items/{P}p-1/variants"), 200),
        (("PATCH", f"/api/catalog-variants/{P}SKU-03"), 400)]
    terminal = [r for r in caplog.records if r.getMessage() == "terminal failure; acknowledged"]
    assert [r.__dict__["status"] for r in terminal] == [400]
    refused = [r for r in caplog.records if r.getMessage() == "variant refused by Klaviyo"]
    assert [r.__dict__["sku"] for r in refused] == ["SKU-03"]
    # The other nine landed.
    for n, sku in enumerate(TEN, start=1):
        if sku != "SKU-03":
            assert held(klaviyo, sku) == expected_variant(n, sku)
    assert klaviyo.variants[P + "SKU-03"]["attributes"]["title"] == "Old"


def test_record_a_job_is_refused_for_goes_singly_and_the_rest_in_a_job(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    ct.add("products", product_doc(skus=TEN))
    # Klaviyo refuses the whole job request for one record (validation is all-or-nothing).
    klaviyo.inject(400, path=job_path("create"), method="POST", errors=[error_object(
        400, "invalid", "Invalid input.", "'price' has an invalid value.",
        pointer="/data/attributes/variants/data/3/attributes/price")])

    assert realtime.deliver(published()) == 200

    refused, accepted = job_posts(klaviyo, "create")
    assert [len(job_resources(refused)), len(job_resources(accepted))] == [10, 9]
    assert "SKU-04" not in {r["attributes"]["sku"] for r in job_resources(accepted)}
    assert single_variant_writes(klaviyo) == [("POST", "/api/catalog-variants")]
    assert klaviyo.requests[-1].json["data"]["attributes"]["sku"] == "SKU-04"
    assert variant_skus(klaviyo) == set(TEN)


def test_deadline_while_polling_a_job_is_redelivered(
    make_realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    realtime = make_realtime(**CATALOG_ENV, REALTIME_DEADLINE_SECONDS="2")
    ct.add("products", product_doc(skus=TEN))
    klaviyo.job_status_sequence = ["queued"] + ["processing"] * 100  # a slow job

    started = time.monotonic()
    assert realtime.deliver(published()) == 500  # Pub/Sub redelivers
    assert time.monotonic() - started < 2.5  # gave up before the deadline
    (job_id,) = job_ids(klaviyo, "create")
    assert 2 <= klaviyo.jobs[job_id]["polls"] <= 5  # short waits, growing

    # Klaviyo finished the job meanwhile: the redelivery finds every variant as it should be
    # and writes none again.
    klaviyo.job_status_sequence = []
    mark = len(klaviyo.requests)
    assert realtime.deliver(published()) == 200
    assert calls(klaviyo, mark) == [("PATCH", f"/api/catalog-items/{P}p-1"),
                                    ("GET", f"/api/catalog-items/{P}p-1/variants")]
    assert variant_skus(klaviyo) == set(TEN)


def test_deadline_while_polling_redelivery_writes_what_is_missing(
    make_realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    realtime = make_realtime(**CATALOG_ENV, REALTIME_DEADLINE_SECONDS="2")
    ct.add("products", product_doc(skus=TEN))
    klaviyo.job_status_sequence = ["processing"] * 100
    assert realtime.deliver(published()) == 500
    # As if Klaviyo had written only 6 of the 10 when the redelivery comes.
    for sku in TEN[6:]:
        del klaviyo.variants[P + sku]
    klaviyo.job_status_sequence = []
    mark = len(klaviyo.requests)

    assert realtime.deliver(published()) == 200

    (job,) = job_posts(klaviyo, "create", mark)
    assert [r["attributes"]["sku"] for r in job_resources(job)] == list(TEN[6:])
    assert variant_skus(klaviyo) == set(TEN)


def test_realtime_job_polling_starts_short_and_backs_off(
    klaviyo: Any, klaviyo_client: Any,
) -> None:
    klaviyo.job_status_sequence = ["queued"] + ["processing"] * 7
    job_id = klaviyo_client.create_catalog_bulk_job(
        "variant", "delete", [{"type": "catalog-variant", "id": f"{P}gone"}])
    slept: list[float] = []

    final = klaviyo_client.wait_for_job(
        lambda jid, deadline: klaviyo_client.get_catalog_bulk_job("variant", "delete", jid,
                                                                  deadline=deadline),
        job_id, poll_interval=catalog_processor.JOB_POLL_FIRST,
        backoff=catalog_processor.JOB_POLL_BACKOFF, max_interval=catalog_processor.JOB_POLL_MAX,
        sleep=slept.append)

    assert final["status"] == "complete" and final["failed_count"] == 1
    assert slept == [0.5, 0.75, 1.125, 1.6875, 2.53125, 3.796875, 4.0, 4.0]


def test_product_resource_updated_syncs_a_published_product(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    ct.add("products", product_doc())
    assert realtime.deliver(change("ResourceUpdated", "product", "p-1")) == 200
    assert variant_skus(klaviyo) == {"SKU-1", "SKU-2"}


@pytest.mark.parametrize("delivery", [published(), change("ResourceUpdated", "product", "p-1")],
                         ids=["ProductPublished", "ResourceUpdated"])
def test_unpublished_or_missing_product_is_not_written(
    realtime: Any, ct: Any, klaviyo: Any, delivery: Any,
) -> None:
    ct.add("products", product_doc(published=False))
    assert realtime.deliver(delivery) == 200
    ct.delete("products", "p-1")
    assert realtime.deliver(delivery) == 200
    # Two reads each (nothing of it left in Klaviyo?), no write.
    assert calls(klaviyo) == [("GET", "/api/catalog-variants"),
                              ("GET", f"/api/catalog-items/{P}p-1")] * 2


@pytest.mark.parametrize(
    ("delivery", "still_exists"),
    [(unpublished(), True), (message("product", "p-1", "ProductDeleted"), False),
     (change("ResourceDeleted", "product", "p-1", version=5), False)],
    ids=["ProductUnpublished", "ProductDeleted", "ResourceDeleted"],
)
def test_unpublished_or_deleted_product_is_removed(
    realtime: Any, ct: Any, klaviyo: Any, delivery: dict[str, Any], still_exists: bool,
) -> None:
    ct.add("products", product_doc())
    assert realtime.deliver(published()) == 200
    if still_exists:  # commercetools confirms: still unpublished
        ct.add("products", product_doc(published=False))
    else:
        ct.delete("products", "p-1")
    mark = len(klaviyo.requests)

    assert realtime.deliver(delivery) == 200

    # Variants first, found by their item relationship (also those of an item already gone).
    assert calls(klaviyo, mark) == [
        ("GET", "/api/catalog-variants"),
        ("DELETE", f"/api/catalog-variants/{P}SKU-1"),
        ("DELETE", f"/api/catalog-variants/{P}SKU-2"),
        ("DELETE", f"/api/catalog-items/{P}p-1"),
    ]
    assert klaviyo.items == {} and klaviyo.variants == {}

    # Redelivered: nothing left to delete, acknowledged.
    mark = len(klaviyo.requests)
    assert realtime.deliver(delivery) == 200
    assert calls(klaviyo, mark) == [("GET", "/api/catalog-variants"),
                                    ("DELETE", f"/api/catalog-items/{P}p-1")]
    assert klaviyo.requests[mark].query == {"filter": f'equals(item.id,"{P}p-1")'}


def test_old_unpublish_after_a_republish_deletes_nothing(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    ct.add("products", product_doc())  # unpublished, then published again: live now
    stale = unpublished()
    assert realtime.deliver(published()) == 200
    mark = len(klaviyo.requests)

    assert realtime.deliver(stale) == 200

    assert klaviyo.requests[mark:] == []
    assert f"{P}p-1" in klaviyo.items and variant_skus(klaviyo) == {"SKU-1", "SKU-2"}


# -- inventory -------------------------------------------------------------------------------------


def seed_variants(realtime: Any, ct: Any, klaviyo: Any) -> int:
    """The product's variants in Klaviyo (SKU-1 with stock 1, SKU-2 with 2); returns a mark."""
    ct.add("products", product_doc())
    assert realtime.deliver(published()) == 200
    return len(klaviyo.requests)


def stock(klaviyo: Any, sku: str) -> int:
    return klaviyo.variants[P + sku]["attributes"]["inventory_quantity"]


def quantity_set(eid: str, quantity: int, sku: str = "SKU-1", **extra: Any) -> dict[str, Any]:
    return message("inventory-entry", eid, "InventoryEntryQuantitySet",
                   oldQuantityOnStock=1, newQuantityOnStock=quantity,
                   oldAvailableQuantity=1, newAvailableQuantity=quantity,
                   resourceUserProvidedIdentifiers={"sku": sku}, **extra)


def test_inventory_quantity_set_patches_the_variant(realtime: Any, ct: Any, klaviyo: Any) -> None:
    mark = seed_variants(realtime, ct, klaviyo)
    ct.add("inventory", inventory_doc("inv-1", "SKU-1", 25))

    assert realtime.deliver(quantity_set("inv-1", 25)) == 200

    assert calls(klaviyo, mark) == [("GET", f"/api/catalog-variants/{P}SKU-1"),
                                    ("PATCH", f"/api/catalog-variants/{P}SKU-1")]
    assert klaviyo.requests[-1].json == {"data": {
        "type": "catalog-variant", "id": f"{P}SKU-1", "attributes": {"inventory_quantity": 25}}}
    assert stock(klaviyo, "SKU-1") == 25
    # The SKU's entries, then once more after the write, to confirm the stock did not move.
    query, confirm = ct.api_requests("inventory")
    assert query.query["where"] == confirm.query["where"] == ['sku="SKU-1"']


def test_inventory_quantity_zero_is_sent(realtime: Any, ct: Any, klaviyo: Any) -> None:
    mark = seed_variants(realtime, ct, klaviyo)
    ct.add("inventory", inventory_doc("inv-1", "SKU-1", 0))

    assert realtime.deliver(quantity_set("inv-1", 0)) == 200

    assert klaviyo.requests[-1].json["data"]["attributes"] == {"inventory_quantity": 0}
    assert writes(klaviyo, mark) == [("PATCH", f"/api/catalog-variants/{P}SKU-1")]
    assert stock(klaviyo, "SKU-1") == 0


def test_inventory_channel_specific(make_realtime: Any, ct: Any, klaviyo: Any) -> None:
    realtime = make_realtime(**CATALOG_ENV, INVENTORY_CHANNEL_ID="ch-store")
    seed_variants(realtime, ct, klaviyo)
    ct.add("inventory", inventory_doc("inv-any", "SKU-1", 10))
    ct.add("inventory", inventory_doc("inv-store", "SKU-1", 0, "ch-store"))
    ct.add("inventory", inventory_doc("inv-other", "SKU-1", 5, "ch-other"))

    # A change of the channel-less entry does not overwrite the channel's 0.
    updated = change("ResourceUpdated", "inventory-entry", "inv-any", identifiers={"sku": "SKU-1"})
    assert realtime.deliver(updated) == 200
    assert stock(klaviyo, "SKU-1") == 0
    # Another channel's change leaves it as it is (no write at all).
    mark = len(klaviyo.requests)
    other = change("ResourceUpdated", "inventory-entry", "inv-other",
                   identifiers={"sku": "SKU-1"})
    assert realtime.deliver(other) == 200
    assert writes(klaviyo, mark) == [] and stock(klaviyo, "SKU-1") == 0
    # The channel's entry deleted: the channel-less stock is the fallback.
    ct.delete("inventory", "inv-store")
    deleted = change("ResourceDeleted", "inventory-entry", "inv-store", version=3,
                     identifiers={"sku": "SKU-1"})
    assert realtime.deliver(deleted) == 200
    assert stock(klaviyo, "SKU-1") == 10


def test_inventory_entry_created_and_deleted_messages(realtime: Any, ct: Any, klaviyo: Any) -> None:
    seed_variants(realtime, ct, klaviyo)
    entry = ct.add("inventory", inventory_doc("inv-2", "SKU-2", 40))

    assert realtime.deliver(message("inventory-entry", "inv-2", "InventoryEntryCreated",
                                    inventoryEntry=entry)) == 200
    assert stock(klaviyo, "SKU-2") == 40

    ct.delete("inventory", "inv-2")
    assert realtime.deliver(message("inventory-entry", "inv-2", "InventoryEntryDeleted",
                                    sku="SKU-2")) == 200
    assert stock(klaviyo, "SKU-2") == 0  # no stock left anywhere


def test_inventory_message_without_sku_reads_the_entry(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    seed_variants(realtime, ct, klaviyo)
    ct.add("inventory", inventory_doc("inv-1", "SKU-1", 8))
    delivery = quantity_set("inv-1", 8)
    del delivery["resourceUserProvidedIdentifiers"]

    assert realtime.deliver(delivery) == 200

    assert stock(klaviyo, "SKU-1") == 8
    assert ct.api_requests("inventory")[0].path.endswith("/inventory/inv-1")


def test_inventory_for_a_variant_not_in_klaviyo_is_skipped(
    realtime: Any, ct: Any, klaviyo: Any, caplog: Any,
) -> None:
    ct.add("inventory", inventory_doc("inv-9", "SKU-NEW", 3))
    caplog.set_level(logging.INFO, logger="connector")

    assert realtime.deliver(quantity_set("inv-9", 3, sku="SKU-NEW")) == 200

    assert calls(klaviyo) == [("GET", f"/api/catalog-variants/{P}SKU-NEW")]
    assert any(r.getMessage() == "variant not in Klaviyo yet; skipped" for r in caplog.records)


# -- ordering, duplicates, failures ----------------------------------------------------------------


ORDERS = {"as-is": lambda xs: xs, "reversed": lambda xs: xs[::-1],
          "interleaved": lambda xs: xs[1::2] + xs[::2]}


@pytest.mark.parametrize("order", list(ORDERS))
def test_every_message_twice_and_out_of_order(
    realtime: Any, ct: Any, klaviyo: Any, order: Any,
) -> None:
    # Final commercetools state: Women renamed Ladies; p-1 published (it was unpublished once)
    # with SKU-1 stocked 7 and SKU-3 added; p-2 deleted.
    ct.add("categories", category_doc("c-women", "Ladies"))
    ct.add("categories", category_doc("c-pants", "Pants", "c-women"))
    ct.add("products", product_doc(skus=("SKU-1", "SKU-3"), categories=("c-pants",),
                                   stock={"SKU-1": 7}))
    ct.add("inventory", inventory_doc("inv-1", "SKU-1", 7))
    deliveries = [
        message("category", "c-women", "CategoryCreated"),
        message("category", "c-pants", "CategoryCreated"),
        change("ResourceUpdated", "category", "c-women"),
        published(),
        unpublished(),  # older than the latest publish
        published(),
        quantity_set("inv-1", 3),  # older quantity message …
        quantity_set("inv-1", 7),
        published("p-2"),  # … and a product deleted since
        change("ResourceDeleted", "product", "p-2", version=4),
    ]
    sequence = ORDERS[order](deliveries + deliveries)

    for delivery in sequence:
        assert realtime.deliver(delivery) == 200

    assert names(klaviyo) == {"c-women": "Ladies", "c-pants": "Ladies > Pants"}
    assert set(klaviyo.items) == {f"{P}p-1"}
    assert variant_skus(klaviyo) == {"SKU-1", "SKU-3"}
    assert stock(klaviyo, "SKU-1") == 7
    assert klaviyo.items[f"{P}p-1"]["relationships"]["categories"] == [f"{P}c-pants",
                                                                         f"{P}c-women"]
    assert klaviyo.events == []  # catalog messages never create events


def test_klaviyo_429_then_success(realtime: Any, ct: Any, klaviyo: Any) -> None:
    add_tree(ct)
    klaviyo.inject(429, path="/api/catalog-categories", method="POST", retry_after=0)

    assert realtime.deliver(message("category", "c-men", "CategoryCreated")) == 200

    assert [r.status for r in klaviyo.requests_to("POST", "/api/catalog-categories")] == [429, 201]
    assert names(klaviyo) == {"c-men": "Men"}


def test_klaviyo_500_forever_fails_the_invocation(
    make_realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    realtime = make_realtime(**CATALOG_ENV, REALTIME_DEADLINE_SECONDS="1")
    ct.add("products", product_doc())
    fault = klaviyo.inject(500, times=10_000, path="/api/catalog-")

    assert realtime.deliver(published()) == 500  # Pub/Sub redelivers

    assert len(klaviyo.requests) >= 2 and klaviyo.items == {}
    fault.times = 0  # Klaviyo recovers: the redelivery completes the work
    assert realtime.deliver(published()) == 200
    assert variant_skus(klaviyo) == {"SKU-1", "SKU-2"}


def test_catalog_processors_can_be_disabled(make_realtime: Any, ct: Any, klaviyo: Any) -> None:
    realtime = make_realtime(**CATALOG_ENV,
                             DISABLED_PROCESSORS="ProductResourceUpdated,InventoryChanged")
    ct.add("products", product_doc())
    ct.add("inventory", inventory_doc("inv-1", "SKU-1", 4))

    assert realtime.deliver(change("ResourceUpdated", "product", "p-1")) == 200
    assert realtime.deliver(quantity_set("inv-1", 4)) == 200
    assert klaviyo.requests == []
    assert realtime.deliver(published()) == 200  # the others still run
    assert variant_skus(klaviyo) == {"SKU-1", "SKU-2"}
