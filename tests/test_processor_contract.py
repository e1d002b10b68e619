"""The contract every realtime processor passes, parametrised over `all_processors(settings)`.

For each processor, at the fast seam (tests/seam.py: `dispatch()` with a real Context over the
fakes, only that processor registered):

- redelivery: the same delivery twice leaves Klaviyo exactly as the first left it (every write
  is an upsert, an idempotent delete or an event with a deterministic unique_id), and the first
  delivery did write something (so the check means something);
- resource gone: the resource the processor reads was deleted meanwhile → acknowledged with
  nothing written and the "<resource> no longer exists; skipped" line (ids only); for the
  processors that remove things from Klaviyo, gone is what they act on → acknowledged, removed;
- invalid resource: a document that fails validation → acknowledged ("failed": a definite
  statement about the record, logged by field names), nothing written.

`CASES` holds a delivery factory per processor. A processor missing from it fails every test of
the suite under its own name (so a new processor cannot be forgotten); an entry for a processor
that no longer exists fails `test_every_case_is_a_processor`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from shared.commercetools.client import CommercetoolsClient
from shared.klaviyo import KlaviyoClient
from shared.processors.dispatch import OutcomeStatus
from tests import test_realtime_catalog as catalog
from tests import test_realtime_checkout as checkout
from tests import test_realtime_consent as consent
from tests import test_realtime_customers as customers
from tests import test_realtime_deletion as deletion
from tests import test_realtime_orders as orders
from tests.fakes.commercetools import FakeCommercetools
from tests.fakes.klaviyo import FakeKlaviyo
from tests.seam import Seam, contract_processor_names, klaviyo_state, klaviyo_writes, make_seam

# What the catalog deliveries need to write (prices in CHF, item URLs).
CATALOG_SETTINGS = {"preferred_currency": "CHF",
                    "product_url_template": "https://shop.example/p/{slug}?sku={sku}"}
NAMES = contract_processor_names()


def wrong_version(document: dict[str, Any]) -> dict[str, Any]:
    """Invalid for every commercetools model: `version` is an integer."""
    return {**document, "version": "not a number"}


@dataclass(frozen=True)
class Case:
    seed: Callable[[Seam], None]  # what the first delivery needs to write something
    delivery: Callable[[], dict[str, Any]]
    # (collection, id) of the commercetools resource the processor reads; None: it reads none.
    reads: tuple[str, str] | None
    gone: Literal["skipped", "removed"] = "skipped"
    gone_line: str | None = None  # default: "<resource> no longer exists; skipped"
    invalid: Callable[[dict[str, Any]], dict[str, Any]] = wrong_version
    invalid_status: OutcomeStatus = "failed"
    why: str = ""  # why this case departs from the defaults


# ---- seeds --------------------------------------------------------------------------------------


def seed_customer(seam: Seam) -> None:
    seam.ct.add("customers", copy.deepcopy(customers.CUSTOMER))


def seed_consenting_customer(seam: Seam) -> None:
    seam.ct.add("customers", copy.deepcopy(consent.CUSTOMER))


def seed_profile(seam: Seam) -> None:
    """A Klaviyo profile for cust-1 (written by the customer processor); commercetools has
    deleted the customer since."""
    seed_customer(seam)
    assert seam.deliver(customers.customer_created(), [seam.processor("CustomerCreated")]
                        ).outcome.writes == 1
    seam.ct.delete("customers", "cust-1")


def seed_order(seam: Seam, **changes: Any) -> None:
    orders.seed(seam.ct, **changes)


def seed_refund(seam: Seam) -> None:
    orders.seed(seam.ct)
    orders.seed_payment(seam.ct, orders.transaction("tx-r1", "Success", 1000))


def seed_cart(seam: Seam) -> None:
    checkout.store(seam.ct)


def seed_category(seam: Seam) -> None:
    seam.ct.add("categories", catalog.category_doc("c-1", "Shoes"))


def seed_klaviyo_category(seam: Seam) -> None:
    seed_category(seam)
    assert seam.deliver(category_created(), [seam.processor("CategoryCreated")]).outcome.writes
    seam.ct.delete("categories", "c-1")


def seed_product(seam: Seam) -> None:
    seam.ct.add("products", catalog.product_doc(categories=()))


def seed_klaviyo_product(seam: Seam, *, published: bool = True) -> None:
    """The product p-1 (SKU-1, SKU-2) as the publish left it in Klaviyo; in commercetools
    published still, or unpublished since."""
    seed_product(seam)
    assert seam.deliver(catalog.published(), [seam.processor("ProductPublished")]).outcome.writes
    seam.ct.put("products", catalog.product_doc(categories=(), published=published))


def seed_unpublished_product(seam: Seam) -> None:
    seed_klaviyo_product(seam, published=False)


def seed_inventory(seam: Seam) -> None:
    seed_klaviyo_product(seam)
    seam.ct.add("inventory", catalog.inventory_doc("e-1", "SKU-1", 7))  # Klaviyo holds 1


# ---- deliveries ---------------------------------------------------------------------------------


def category_created() -> dict[str, Any]:
    return catalog.message("category", "c-1", "CategoryCreated")


def quantity_set() -> dict[str, Any]:
    # No SKU in the message: the entry is read by id for it.
    return catalog.message("inventory-entry", "e-1", "InventoryEntryQuantitySet",
                           oldQuantityOnStock=1, newQuantityOnStock=7,
                           oldAvailableQuantity=1, newAvailableQuantity=7)


def published_but_invalid(document: dict[str, Any]) -> dict[str, Any]:
    return {**wrong_version(document),
            "masterData": {**document["masterData"], "published": True}}


CUSTOMER = ("customers", "cust-1")
PRODUCT = ("products", "p-1")


def remover(delivery: Callable[[], dict[str, Any]]) -> Case:
    """A product removal's case: p-1 unpublished in commercetools, still in Klaviyo."""
    return Case(
        seed_unpublished_product, delivery, PRODUCT, gone="removed",
        invalid=published_but_invalid, invalid_status="processed",
        why="removal decides on the raw `published` flag, so that a product failing validation "
            "neither blocks nor wrongly allows it: invalid but published is a stale message "
            "(nothing deleted); gone is what the processor acts on (removed from Klaviyo)")


CASES: dict[str, Case] = {
    "CustomerCreated": Case(seed_customer, customers.customer_created, CUSTOMER),
    "CustomerUpdated": Case(seed_customer, lambda: consent.message("CustomerFirstNameSet"),
                            CUSTOMER),
    "CustomerResourceUpdated": Case(seed_customer, customers.resource_updated, CUSTOMER),
    "CustomerConsent": Case(seed_consenting_customer,
                            lambda: consent.message("CustomerCreated", consent.CUSTOMER),
                            CUSTOMER),
    "CustomerDeleted": Case(
        seed_profile, deletion.customer_deleted, None, gone="removed",
        why="commercetools has deleted the customer already: the message (its email) is the "
            "processor's only input, and the profile's removal is what it does"),
    "OrderCreated": Case(seed_order, orders.order_created, ("orders", "order-1")),
    "OrderStateChanged": Case(lambda seam: seed_order(seam, orderState="Confirmed"),
                              lambda: orders.state_changed("Confirmed"), ("orders", "order-1")),
    "OrderRefunded": Case(
        seed_refund,
        lambda: orders.transaction_added(orders.transaction("tx-r1", "Success", 1000)),
        ("payments", "pay-1")),
    "StartedCheckout": Case(seed_cart, checkout.cart_change, ("carts", "cart-1")),
    "CategoryCreated": Case(seed_category, category_created, ("categories", "c-1")),
    "CategoryResourceUpdated": Case(
        seed_category, lambda: catalog.change("ResourceUpdated", "category", "c-1"),
        ("categories", "c-1")),
    "CategoryResourceDeleted": Case(
        seed_klaviyo_category, lambda: catalog.change("ResourceDeleted", "category", "c-1"),
        None, gone="removed",
        why="category ids are never reused: the deletion needs no read, and removing the "
            "category from Klaviyo is what it does"),
    "ProductPublished": Case(seed_product, catalog.published, PRODUCT),
    "ProductResourceUpdated": Case(
        seed_product, lambda: catalog.change("ResourceUpdated", "product", "p-1"), PRODUCT),
    "ProductUnpublished": remover(catalog.unpublished),
    "ProductDeleted": remover(lambda: catalog.message("product", "p-1", "ProductDeleted")),
    "ProductResourceDeleted": remover(
        lambda: catalog.change("ResourceDeleted", "product", "p-1")),
    "InventoryChanged": Case(
        seed_inventory, quantity_set, ("inventory", "e-1"),
        gone_line="inventory entry SKU unknown; skipped",
        why="the entry is read (raw, in shared/processors/catalog.py) only for its SKU"),
}


def case(name: str) -> Case:
    if name not in CASES:
        pytest.fail(f"processor {name} has no case in tests/test_processor_contract.py CASES: "
                    "add a delivery factory for it")
    return CASES[name]


@pytest.fixture
def seam(ct: FakeCommercetools, klaviyo: FakeKlaviyo, ct_client: CommercetoolsClient,
         klaviyo_client: KlaviyoClient) -> Seam:
    return make_seam(ct, klaviyo, ct_client, klaviyo_client, **CATALOG_SETTINGS)


def held(klaviyo: FakeKlaviyo) -> int:
    """How many objects Klaviyo holds (what a removal makes fewer)."""
    return sum(map(len, (klaviyo.profiles, klaviyo.items, klaviyo.variants, klaviyo.categories)))


def test_every_case_is_a_processor() -> None:
    assert sorted(set(CASES) - set(NAMES)) == []


@pytest.mark.parametrize("name", NAMES)
def test_redelivery_makes_the_same_klaviyo_writes(seam: Seam, name: str) -> None:
    this = case(name)
    this.seed(seam)
    processor = [seam.processor(name)]
    delivery = this.delivery()

    first = seam.deliver(delivery, processor)
    after_first = klaviyo_state(seam.klaviyo)
    again = seam.deliver(delivery, processor)

    assert first.acknowledged and first.outcome.status == "processed"
    assert first.outcome.writes >= 1, "the first delivery must write for the check to mean much"
    assert again.acknowledged and again.outcome.status == "processed"
    assert klaviyo_state(seam.klaviyo) == after_first


@pytest.mark.parametrize("name", NAMES)
def test_resource_gone_is_acknowledged(seam: Seam, name: str,
                                       caplog: pytest.LogCaptureFixture) -> None:
    this = case(name)
    this.seed(seam)
    if this.reads is not None:
        seam.ct.delete(*this.reads)
    before, since = held(seam.klaviyo), len(seam.klaviyo.requests)
    caplog.set_level(logging.INFO, logger="connector")

    delivered = seam.deliver(this.delivery(), [seam.processor(name)])

    assert delivered.acknowledged and delivered.outcome.status == "processed"
    if this.gone == "removed":
        assert held(seam.klaviyo) < before
        return
    assert delivered.outcome.writes == 0
    assert klaviyo_writes(seam.klaviyo, since) == []
    assert this.reads is not None
    label = {"customers": "customer", "orders": "order", "payments": "payment",
             "carts": "cart", "categories": "category", "products": "product"}.get(this.reads[0])
    line = this.gone_line or f"{label} no longer exists; skipped"
    (record,) = [r for r in caplog.records if r.getMessage() == line]
    fields = {k for k in vars(record) if k.startswith("ct")}
    assert fields and all(k.endswith("Id") for k in fields)  # ids only
    assert this.reads[1] in {getattr(record, k) for k in fields}


@pytest.mark.parametrize("name", NAMES)
def test_invalid_resource_is_acknowledged_with_nothing_written(
    seam: Seam, name: str, caplog: pytest.LogCaptureFixture,
) -> None:
    this = case(name)
    if this.reads is None:
        pytest.skip(f"{name} reads no commercetools resource: {this.why}")
    this.seed(seam)
    document = seam.ct.get(*this.reads)
    assert document is not None
    seam.ct.put(this.reads[0], this.invalid(document))
    since = len(seam.klaviyo.requests)
    caplog.set_level(logging.INFO, logger="connector")

    delivered = seam.deliver(this.delivery(), [seam.processor(name)])

    assert delivered.acknowledged
    assert delivered.outcome.status == this.invalid_status
    assert delivered.outcome.writes == 0
    assert klaviyo_writes(seam.klaviyo, since) == []
    if this.invalid_status == "failed":
        (record,) = [r for r in caplog.records
                     if r.getMessage() == "resource failed validation; acknowledged"]
        assert vars(record)["invalidFields"] == ["version"]  # a log line's extra field
