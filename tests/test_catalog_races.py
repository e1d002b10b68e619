"""Overlapping catalog deliveries end in commercetools' latest state (issue 14 §3, §6).

Each test holds a Klaviyo write in flight (a delayed answer of the fake, which applies the
write after the delay) while commercetools changes, or while a second delivery for the same
resource runs, through the real function (functions-framework, CloudEvents, the fakes over
HTTP). Found by, or modelled on, the realtime soak with live edits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.processors import category_links
from tests.test_realtime_catalog import (
    CATALOG_ENV,
    P,
    category_doc,
    change,
    inventory_doc,
    message,
    product_doc,
    published,
    quantity_set,
    unpublished,
    variant_skus,
)

Later = Callable[[float, Callable[[], object]], None]


@pytest.fixture
def realtime(make_realtime: Callable[..., Any]) -> Any:
    return make_realtime(**CATALOG_ENV)


@pytest.fixture
def meanwhile() -> Iterator[Later]:
    """Run `action` after `seconds` on another thread (while a delivery is in flight)."""
    threads: list[threading.Thread] = []
    failures: list[BaseException] = []

    def schedule(seconds: float, action: Callable[[], object]) -> None:
        def run() -> None:
            time.sleep(seconds)
            try:
                action()
            except BaseException as exc:  # reported by the test, not lost in the thread
                failures.append(exc)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield schedule
    for thread in threads:
        thread.join(15)
    assert not failures, failures


def versioned(doc: dict[str, Any], version: int) -> dict[str, Any]:
    return {**doc, "version": version}


# -- products ------------------------------------------------------------------------------------


def test_variant_created_while_an_unpublish_removes_the_item_is_removed_too(
    realtime: Any, ct: Any, klaviyo: Any, meanwhile: Later,
) -> None:
    """The soak's resurrected variant (SKU-153-2, seed 7): a sync's variant create lands after
    the concurrent unpublish listed the item's variants and before it deleted the item; the
    sync then found the product unpublished, but by then Klaviyo no longer listed the variant
    under the deleted item, so it stayed: a variant of a product that is not published."""
    ct.add("categories", category_doc("c-jeans", "Jeans"))
    ct.add("products", product_doc("p-1", ("SKU-1",)))
    assert realtime.deliver(published()) == 200
    ct.add("products", versioned(product_doc("p-1", ("SKU-1", "SKU-2")), 2))
    # The sync's create of SKU-2 is slow (applied at ~0.8 s) …
    klaviyo.inject(None, delay=0.8, path="/api/catalog-variants", method="POST")
    # … while the unpublish (from 0.2 s) lists and deletes SKU-1, then deletes the item (~1.3 s).
    klaviyo.inject(None, delay=1.0, path=f"/api/catalog-items/{P}p-1", method="DELETE")
    hidden = versioned(product_doc("p-1", ("SKU-1", "SKU-2"), published=False), 3)
    statuses: list[int] = []

    def unpublish() -> None:
        ct.add("products", hidden)
        statuses.append(realtime.deliver(unpublished()))

    meanwhile(0.2, unpublish)
    # Whatever lists the item's variants from now on answers after the item is gone.
    meanwhile(0.5, lambda: klaviyo.inject(None, delay=1.5, path=f"/api/catalog-items/{P}p-1/",
                                          method="GET"))

    assert realtime.deliver(change("ResourceUpdated", "product", "p-1", version=2)) == 200
    time.sleep(1.5)  # the unpublish delivery ends
    assert statuses == [200]
    assert klaviyo.items == {}
    assert klaviyo.variants == {}


def test_variant_refused_because_a_removal_deleted_the_item_is_written_again_if_published(
    realtime: Any, ct: Any, klaviyo: Any, meanwhile: Later,
) -> None:
    """An unpublish deleted the item between the sync's item write and its variant create
    (Klaviyo: the variant's item does not exist), and the product was republished: the sync
    does not acknowledge the refusal as a bad variant, it writes the item again."""
    ct.add("categories", category_doc("c-jeans", "Jeans"))
    ct.add("products", product_doc("p-1", ("SKU-1",)))
    klaviyo.inject(None, delay=0.6, path="/api/catalog-variants", method="POST")

    def item_deleted_meanwhile() -> None:
        klaviyo.items.pop(P + "p-1", None)  # what the concurrent removal did
        ct.add("products", versioned(product_doc("p-1", ("SKU-1",)), 1))

    meanwhile(0.2, item_deleted_meanwhile)
    assert realtime.deliver(published()) == 200
    assert P + "p-1" in klaviyo.items
    assert variant_skus(klaviyo) == {"SKU-1"}


# -- categories ----------------------------------------------------------------------------------


def test_category_renamed_while_it_is_written_ends_renamed(
    realtime: Any, ct: Any, klaviyo: Any, meanwhile: Later,
) -> None:
    ct.add("categories", category_doc("c-jeans", "Jeans"))
    klaviyo.inject(None, delay=0.6, path="/api/catalog-categories", method="POST")
    meanwhile(0.2, lambda: ct.add("categories",
                                  versioned(category_doc("c-jeans", "Denim"), 2)))
    assert realtime.deliver(message("category", "c-jeans", "CategoryCreated")) == 200
    assert klaviyo.categories[P + "c-jeans"]["attributes"]["name"] == "Denim"


def test_category_deleted_while_it_is_created_is_not_resurrected(
    realtime: Any, ct: Any, klaviyo: Any, meanwhile: Later,
) -> None:
    ct.add("categories", category_doc("c-jeans", "Jeans"))
    klaviyo.inject(None, delay=0.6, path="/api/catalog-categories", method="POST")
    meanwhile(0.2, lambda: ct.delete("categories", "c-jeans"))
    assert realtime.deliver(message("category", "c-jeans", "CategoryCreated")) == 200
    assert klaviyo.categories == {}


def item_categories(klaviyo: Any, pid: str) -> set[str]:
    return {c.removeprefix(P) for c in klaviyo.items[P + pid]["relationships"]["categories"]}


def add_shop(ct: Any, products: int = 1) -> None:
    ct.add("categories", category_doc("c-women", "Women"))
    ct.add("categories", category_doc("c-men", "Men"))
    ct.add("categories", category_doc("c-jeans", "Jeans", "c-women"))
    ct.add("categories", category_doc("c-slim", "Slim", "c-women", "c-jeans"))
    for n in range(1, products + 1):
        ct.add("products", product_doc(f"p-{n}", (f"SKU-{n}",), categories=("c-slim",)))


def sync_all(realtime: Any, ct: Any, products: int = 1) -> None:
    for cid in ("c-women", "c-men", "c-jeans", "c-slim"):
        assert realtime.deliver(message("category", cid, "CategoryCreated")) == 200
    for n in range(1, products + 1):
        assert realtime.deliver(published(f"p-{n}")) == 200


def move_jeans_under_men(ct: Any) -> None:
    ct.add("categories", versioned(category_doc("c-jeans", "Jeans", "c-men"), 2))
    ct.add("categories", versioned(category_doc("c-slim", "Slim", "c-men", "c-jeans"), 2))


def test_products_under_a_moved_category_get_its_new_ancestors(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    add_shop(ct)
    sync_all(realtime, ct)
    assert item_categories(klaviyo, "p-1") == {"c-slim", "c-jeans", "c-women"}

    move_jeans_under_men(ct)  # changeParent: commercetools sends only a ResourceUpdated
    assert realtime.deliver(change("ResourceUpdated", "category", "c-jeans")) == 200

    assert item_categories(klaviyo, "p-1") == {"c-slim", "c-jeans", "c-men"}
    assert klaviyo.categories[P + "c-slim"]["attributes"]["name"] == "Men > Jeans > Slim"
    # Redelivered: every link and name is right, nothing is written.
    mark = len(klaviyo.requests)
    assert realtime.deliver(change("ResourceUpdated", "category", "c-jeans")) == 200
    assert [r for r in list(klaviyo.requests)[mark:] if r.method != "GET"] == []


def test_a_rename_reads_the_items_links_and_writes_none(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    add_shop(ct)
    sync_all(realtime, ct)
    mark = len(klaviyo.requests)
    ct.add("categories", versioned(category_doc("c-jeans", "Denim", "c-women"), 2))
    assert realtime.deliver(change("ResourceUpdated", "category", "c-jeans")) == 200
    item_writes = [r for r in list(klaviyo.requests)[mark:]
                   if r.path.startswith("/api/catalog-items") and r.method != "GET"]
    assert item_writes == []
    assert klaviyo.categories[P + "c-slim"]["attributes"]["name"] == "Women > Denim > Slim"


def test_an_unrelated_category_change_costs_no_item_reads(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    add_shop(ct)
    sync_all(realtime, ct)
    mark = len(klaviyo.requests)
    ct.add("categories", versioned(category_doc("c-jeans", "Jeans", "c-women",
                                                orderHint="0.5"), 2))
    assert realtime.deliver(change("ResourceUpdated", "category", "c-jeans")) == 200
    assert [(r.method, r.path) for r in list(klaviyo.requests)[mark:]] == [
        ("GET", "/api/catalog-categories")]  # the subtree's names, all right


def test_a_move_with_more_items_than_one_delivery_relinks_goes_on_when_redelivered(
    realtime: Any, ct: Any, klaviyo: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_shop(ct, products=5)
    sync_all(realtime, ct, products=5)
    monkeypatch.setattr(category_links, "MAX_RELINKS_PER_DELIVERY", 2)
    move_jeans_under_men(ct)
    delivery = change("ResourceUpdated", "category", "c-jeans")

    answers = [realtime.deliver(delivery) for _ in range(3)]

    assert answers == [500, 500, 200]  # 2 + 2 + 1 items; the names only once all are right
    for n in range(1, 6):
        assert item_categories(klaviyo, f"p-{n}") == {"c-slim", "c-jeans", "c-men"}
    assert klaviyo.categories[P + "c-jeans"]["attributes"]["name"] == "Men > Jeans"


# -- inventory -----------------------------------------------------------------------------------


def test_stock_changed_while_it_is_written_ends_at_the_latest_quantity(
    realtime: Any, ct: Any, klaviyo: Any, meanwhile: Later,
) -> None:
    ct.add("categories", category_doc("c-jeans", "Jeans"))
    ct.add("products", product_doc("p-1", ("SKU-1",)))
    assert realtime.deliver(published()) == 200
    ct.add("inventory", inventory_doc("inv-1", "SKU-1", 25))
    klaviyo.inject(None, delay=0.6, path=f"/api/catalog-variants/{P}SKU-1", method="PATCH")
    meanwhile(0.2, lambda: ct.add("inventory",
                                  versioned(inventory_doc("inv-1", "SKU-1", 7), 2)))
    assert realtime.deliver(quantity_set("inv-1", 25)) == 200
    assert klaviyo.variants[P + "SKU-1"]["attributes"]["inventory_quantity"] == 7


def test_a_category_moved_to_the_root_loses_its_old_ancestors_on_every_item(
    realtime: Any, ct: Any, klaviyo: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No new ancestor to look for: the old one is found on the sampled items, and the items
    # still linked to it are the ones left, delivery after delivery.
    add_shop(ct, products=5)
    sync_all(realtime, ct, products=5)
    monkeypatch.setattr(category_links, "MAX_RELINKS_PER_DELIVERY", 2)
    ct.add("categories", versioned(category_doc("c-jeans", "Jeans"), 2))
    ct.add("categories", versioned(category_doc("c-slim", "Slim", "c-jeans"), 2))
    delivery = change("ResourceUpdated", "category", "c-jeans")

    answers = [realtime.deliver(delivery) for _ in range(3)]

    assert answers == [500, 500, 200]
    for n in range(1, 6):
        assert item_categories(klaviyo, f"p-{n}") == {"c-slim", "c-jeans"}
    assert klaviyo.categories[P + "c-slim"]["attributes"]["name"] == "Jeans > Slim"


def test_a_rename_costs_two_item_link_reads_however_many_products(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    add_shop(ct, products=6)
    sync_all(realtime, ct, products=6)
    mark = len(klaviyo.requests)
    ct.add("categories", versioned(category_doc("c-jeans", "Denim", "c-women"), 2))
    assert realtime.deliver(change("ResourceUpdated", "category", "c-jeans")) == 200
    made = list(klaviyo.requests)[mark:]
    link_reads = [r for r in made if r.method == "GET"
                  and r.query.get("filter", "").startswith("equals(item.id,")]
    assert len(link_reads) == 2  # the first and the last product's item
    assert [r for r in made if r.path.startswith("/api/catalog-items")] == []


def test_item_written_with_the_old_ancestors_after_a_relink_is_written_again(
    realtime: Any, ct: Any, klaviyo: Any, meanwhile: Later,
) -> None:
    """A product sync read the product (its category under Women), its item write is slow; the
    category moves under Men and its delivery relinks the item; then the product's write lands
    with the old ancestors. The product's version did not move, its category's ancestors did."""
    add_shop(ct)
    sync_all(realtime, ct)
    ct.add("products", versioned(product_doc("p-1", ("SKU-1",), categories=("c-slim",),
                                             name="Slim Jeans"), 2))
    klaviyo.inject(None, delay=0.8, path=f"/api/catalog-items/{P}p-1", method="PATCH")
    statuses: list[int] = []

    def move() -> None:
        move_jeans_under_men(ct)
        statuses.append(realtime.deliver(change("ResourceUpdated", "category", "c-jeans")))

    meanwhile(0.2, move)
    assert realtime.deliver(change("ResourceUpdated", "product", "p-1", version=2)) == 200
    time.sleep(0.5)
    assert statuses == [200]
    assert item_categories(klaviyo, "p-1") == {"c-slim", "c-jeans", "c-men"}
    assert klaviyo.items[P + "p-1"]["attributes"]["title"] == "Slim Jeans"


@pytest.mark.parametrize("left", ["item", "variant"])
def test_a_late_write_after_the_removal_is_removed_by_the_next_delivery(
    realtime: Any, ct: Any, klaviyo: Any, left: str,
) -> None:
    """A write Klaviyo applied after the function gave up on its answer (timed out: that
    delivery failed and is redelivered) landed after the unpublish's removal. The redelivery
    finds the product unpublished and what the late write left, and removes it."""
    ct.add("categories", category_doc("c-jeans", "Jeans"))
    ct.add("products", product_doc("p-1", ("SKU-1",)))
    assert realtime.deliver(published()) == 200
    item, variant = klaviyo.items[P + "p-1"], klaviyo.variants[P + "SKU-1"]
    ct.add("products", versioned(product_doc("p-1", ("SKU-1",), published=False), 2))
    assert realtime.deliver(unpublished()) == 200
    if left == "item":
        klaviyo.items[P + "p-1"] = item  # the late item create
    else:
        klaviyo.variants[P + "SKU-1"] = variant  # the late variant create (its item gone)

    assert realtime.deliver(published()) == 200  # the failed delivery, redelivered

    assert klaviyo.items == {} and klaviyo.variants == {}
