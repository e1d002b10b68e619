"""Order events never write an old email or address onto a profile (issue 14 §2).

A registered customer's order is named by `external_id` only; the order's `customerEmail` and
billing address are snapshots of when it was placed. Only a guest order uses its own email (and
its billing location on Placed Order). Realtime and bulk alike.
"""

from __future__ import annotations

import copy
from typing import Any

from shared.bulk.exporters.orders import OrdersExporter
from shared.commercetools.models.order import Order
from shared.mapping.orders import order_profile
from tests.test_bulk_exporters import order_doc, run_all
from tests.test_realtime_customers import CUSTOMER, customer_created
from tests.test_realtime_orders import ORDER, bodies, order_created, seed, state_changed

NEW_EMAIL = "jane.new@example.org"  # the customer's email now; ORDER carries jane@example.org


def profile_of(klaviyo: Any, external_id: str) -> dict[str, Any]:
    (profile,) = [p for p in klaviyo.profiles.values()
                  if p["attributes"].get("external_id") == external_id]
    return profile["attributes"]


def test_order_profile_identity() -> None:
    registered = Order.model_validate(copy.deepcopy(ORDER))
    assert order_profile(registered) == {"external_id": "cust-1"}
    assert order_profile(registered, with_location=True) == {"external_id": "cust-1"}
    guest = Order.model_validate({**copy.deepcopy(ORDER), "customerId": None})
    assert order_profile(guest) == {"email": "jane@example.org"}
    assert order_profile(guest, with_location=True) == {
        "email": "jane@example.org",
        "location": {"address1": "23, High Road", "city": "London", "country": "GB",
                     "zip": "SW1A 1AA"}}
    no_address = Order.model_validate({**copy.deepcopy(ORDER), "customerId": None,
                                       "billingAddress": None})
    assert order_profile(no_address, with_location=True) == {"email": "jane@example.org"}
    nobody = Order.model_validate({**copy.deepcopy(ORDER), "customerId": None,
                                   "customerEmail": None})
    assert order_profile(nobody) is None


def test_fulfilment_of_an_old_order_keeps_the_customers_new_email(
    make_realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    realtime = make_realtime()
    customer = {**copy.deepcopy(CUSTOMER), "email": NEW_EMAIL}
    ct.add("customers", customer)
    seed(ct, orderState="Complete")  # placed when the customer was jane@example.org
    assert realtime.deliver(customer_created(customer)) == 200
    assert realtime.deliver(order_created()) == 200
    assert realtime.deliver(state_changed("Complete")) == 200
    sent = [b["data"]["attributes"]["profile"]["data"]["attributes"] for b in bodies(klaviyo)]
    assert sent and all(p == {"external_id": "cust-1"} for p in sent)
    profile = profile_of(klaviyo, "cust-1")
    assert profile["email"] == NEW_EMAIL
    assert profile["location"]["city"] == "London"  # the customer's own address, not the order's
    assert {e["metric"] for e in klaviyo.events} >= {"Placed Order", "Fulfilled Order"}
    assert len({e["profile_id"] for e in klaviyo.events}) == 1


def test_guest_order_is_named_by_its_email_with_its_location(
    make_realtime: Any, ct: Any, klaviyo: Any,
) -> None:
    seed(ct, customerId=None)
    realtime = make_realtime()
    assert realtime.deliver(order_created({**ORDER, "customerId": None})) == 200
    placed = [b["data"]["attributes"] for b in bodies(klaviyo)
              if b["data"]["attributes"]["metric"]["data"]["attributes"]["name"]
              == "Placed Order"]
    assert [p["profile"]["data"]["attributes"] for p in placed] == [{
        "email": "jane@example.org",
        "location": {"address1": "23, High Road", "city": "London", "country": "GB",
                     "zip": "SW1A 1AA"}}]


def test_bulk_order_history_does_not_bring_back_an_old_email(
    ct: Any, ct_client: Any, klaviyo: Any, klaviyo_client: Any,
) -> None:
    klaviyo_client.upsert_profile({"email": NEW_EMAIL, "external_id": "c00001"})
    ct.add("orders", order_doc(1, customer="c00001", email="old@example.org", lines=1,
                               billingAddress={"city": "Oldtown", "country": "DE"}))
    ct.add("orders", order_doc(2, customer=None, email="guest@example.org", lines=1))
    totals = run_all(OrdersExporter(ct_client, klaviyo_client))
    assert (totals.read, totals.sent, totals.failed) == (2, 2, 0)
    profile = profile_of(klaviyo, "c00001")
    assert profile["email"] == NEW_EMAIL and "location" not in profile
    emails = sorted(p["attributes"].get("email") for p in klaviyo.profiles.values())
    assert emails == ["guest@example.org", NEW_EMAIL]
