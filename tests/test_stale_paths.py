"""Smaller stale-data paths (issue 14 §6): a refund whose payment is not linked to an order yet
is redelivered for a bounded time, not acknowledged and lost; a SKU moved between products ends
on the new item whatever order the deliveries come in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.commercetools.messages import parse_ct_message
from shared.processors.orders import UNLINKED_PAYMENT_WAIT, _younger_than
from tests.test_realtime_catalog import (
    CATALOG_ENV,
    P,
    category_doc,
    change,
    product_doc,
    published,
    variant_skus,
)
from tests.test_realtime_orders import (
    ORDER,
    refund_body,
    seed,
    seed_payment,
    stored,
    transaction,
    transaction_added,
)


def stamp(ago: timedelta) -> str:
    return (datetime.now(UTC) - ago).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def fresh(delivery: dict[str, Any], ago: timedelta = timedelta(seconds=5)) -> dict[str, Any]:
    return {**delivery, "createdAt": stamp(ago), "lastModifiedAt": stamp(ago)}


def test_refund_before_its_payment_is_linked_is_redelivered_then_sent(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    refund = transaction("tx-r1", "Success", 1500)
    seed_payment(ct, refund)
    delivery = fresh(transaction_added(refund))
    seed(ct, paymentInfo={"payments": []})  # the order exists, the payment is not on it yet
    assert realtime.deliver(delivery) == 500  # not acknowledged: Pub/Sub asks again
    assert klaviyo.requests == []
    seed(ct)  # the PSP integration adds the payment to the order
    assert realtime.deliver(delivery) == 200
    assert stored(klaviyo) == [("Refunded Order", "tx-r1")]
    assert klaviyo.events[0]["unique_id"] == refund_body("tx-r1", 15.0, "")["data"][
        "attributes"]["unique_id"]


def test_refund_of_a_payment_no_order_takes_is_dropped_after_the_wait(
    realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    refund = transaction("tx-r1", "Success", 1500)
    seed_payment(ct, refund)
    late = fresh(transaction_added(refund), ago=UNLINKED_PAYMENT_WAIT + timedelta(minutes=1))
    assert realtime.deliver(late) == 200
    assert klaviyo.requests == []
    assert ORDER["paymentInfo"]  # (the fixture order does reference pay-1 when seeded)


def test_message_age_window() -> None:
    def message(created: str | None, modified: str | None = None) -> Any:
        data: dict[str, Any] = {"notificationType": "Message", "resource": {
            "typeId": "payment", "id": "p"}, "type": "PaymentTransactionAdded"}
        if created:
            data["createdAt"] = created
        if modified:
            data["lastModifiedAt"] = modified
        return parse_ct_message(data)

    hour = timedelta(hours=1)
    assert _younger_than(message(stamp(timedelta(minutes=59))), hour)
    assert not _younger_than(message(stamp(timedelta(minutes=61))), hour)
    assert not _younger_than(message(None), hour)  # no time to go by: the old behaviour
    assert UNLINKED_PAYMENT_WAIT == hour


# ---- a SKU moved from one product to another ---------------------------------------------------

@pytest.mark.parametrize("order", [("p-1", "p-2"), ("p-2", "p-1")], ids=["old-first", "new-first"])
def test_sku_moved_between_products_ends_on_the_new_item(
    make_realtime: Any, ct: Any, klaviyo: Any, order: tuple[str, str],
) -> None:
    realtime = make_realtime(**CATALOG_ENV)
    ct.add("categories", category_doc("c-jeans", "Jeans"))
    ct.add("products", product_doc("p-1", ("SKU-1", "SKU-2")))
    ct.add("products", product_doc("p-2", ("SKU-3",)))
    assert realtime.deliver(published("p-1")) == 200
    assert realtime.deliver(published("p-2")) == 200
    assert variant_skus(klaviyo, "p-1") == {"SKU-1", "SKU-2"}
    # SKU-2 moves from p-1 to p-2; the two products' deliveries arrive in either order
    ct.add("products", product_doc("p-1", ("SKU-1",)))
    ct.add("products", product_doc("p-2", ("SKU-3", "SKU-2")))
    for pid in order:
        assert realtime.deliver(change("ResourceUpdated", "product", pid)) == 200
    assert variant_skus(klaviyo, "p-1") == {"SKU-1"}
    assert variant_skus(klaviyo, "p-2") == {"SKU-3", "SKU-2"}
    # and a redelivery of either changes nothing
    for pid in ("p-1", "p-2"):
        assert realtime.deliver(change("ResourceUpdated", "product", pid)) == 200
    assert variant_skus(klaviyo, "p-2") == {"SKU-3", "SKU-2"}
    assert variant_skus(klaviyo, "p-1") == {"SKU-1"}


def test_sku_dropped_by_its_product_is_still_deleted(make_realtime: Any, ct: Any,
                                                       klaviyo: Any) -> None:
    realtime = make_realtime(**CATALOG_ENV)
    ct.add("categories", category_doc("c-jeans", "Jeans"))
    ct.add("products", product_doc("p-1", ("SKU-1", "SKU-2")))
    ct.add("products", product_doc("p-9", ("SKU-2",), published=False))  # staged only
    assert realtime.deliver(published("p-1")) == 200
    ct.add("products", product_doc("p-1", ("SKU-1",)))
    assert realtime.deliver(change("ResourceUpdated", "product", "p-1")) == 200
    assert P + "SKU-2" not in klaviyo.variants
