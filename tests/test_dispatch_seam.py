"""The acknowledge / redeliver table, pinned at the fast seam: `dispatch()` with a real Context
over the commercetools and Klaviyo fakes (tests/seam.py), the real processors, no mocks.

A CustomerCreated delivery triggers two real processors under the contract settings
(CustomerCreated: the profile upsert; CustomerConsent: the newsletter subscription), so one
delivery shows what each processor's outcome does to the others and to the whole: one processor's
failure never stops another, a definite statement about the record is acknowledged, anything
else fails the invocation so Pub/Sub redelivers (and the writes already made are idempotent).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from shared.commercetools.client import CommercetoolsClient
from shared.commercetools.messages import CtMessage
from shared.klaviyo import KlaviyoClient
from shared.processors import Context, Processor, Trigger
from shared.processors.dispatch import Outcome, OutcomeStatus
from tests.fakes.commercetools import FakeCommercetools
from tests.fakes.klaviyo import FakeKlaviyo
from tests.seam import Seam, klaviyo_state, klaviyo_writes, make_seam
from tests.test_realtime_consent import CUSTOMER, message

PROFILES = "/api/profile-import"
SUBSCRIBE = "/api/profile-subscription-bulk-create-jobs"
BOTH = ("CustomerCreated", "CustomerConsent")


@pytest.fixture
def seam(ct: FakeCommercetools, klaviyo: FakeKlaviyo, ct_client: CommercetoolsClient,
         klaviyo_client: KlaviyoClient) -> Seam:
    return make_seam(ct, klaviyo, ct_client, klaviyo_client)


def customer_created() -> dict[str, Any]:
    return message("CustomerCreated", CUSTOMER)


def invalid_customer(ct: FakeCommercetools, klaviyo: FakeKlaviyo) -> None:
    ct.add("customers", {**copy.deepcopy(CUSTOMER), "version": "not a number"})


def valid_customer(ct: FakeCommercetools, klaviyo: FakeKlaviyo) -> None:
    ct.add("customers", copy.deepcopy(CUSTOMER))


def klaviyo_fault(status: int, path: str) -> Callable[[FakeCommercetools, FakeKlaviyo], None]:
    def setup(ct: FakeCommercetools, klaviyo: FakeKlaviyo) -> None:
        valid_customer(ct, klaviyo)
        klaviyo.inject(status, times=100, path=path)
    return setup


def ct_fault(status: int) -> Callable[[FakeCommercetools, FakeKlaviyo], None]:
    def setup(ct: FakeCommercetools, klaviyo: FakeKlaviyo) -> None:
        valid_customer(ct, klaviyo)
        ct.inject(status, times=None, path="/customers/")
    return setup


def accepted(klaviyo: FakeKlaviyo) -> set[str]:
    return {r.path for r in klaviyo.requests
            if r.method != "GET" and r.status is not None and 200 <= r.status < 300}


def nothing(ct: FakeCommercetools, klaviyo: FakeKlaviyo) -> None:
    pass


@dataclass(frozen=True)
class Row:
    setup: Callable[[FakeCommercetools, FakeKlaviyo], None]
    delivery: Callable[[], dict[str, Any] | bytes]
    acknowledged: bool
    status: OutcomeStatus
    writes: int
    processors: tuple[str, ...] = ()
    redeliver: tuple[str, ...] = ()
    accepted: tuple[str, ...] = ()  # the Klaviyo writes accepted (2xx), by path


TABLE = {
    # nothing to do with a delivery that is not one: acknowledged, nothing read or written
    "malformed": Row(nothing, lambda: b"not json", True, "malformed", 0),
    "no processor": Row(valid_customer, lambda: message("CustomerGroupSet"), True, "ignored", 0),
    "both processed": Row(valid_customer, customer_created, True, "processed", 2, BOTH,
                          accepted=(PROFILES, SUBSCRIBE)),
    # the customer was deleted meanwhile: both skip it, nothing to retry
    "resource gone": Row(nothing, customer_created, True, "processed", 0, BOTH),
    # a definite statement about the record: acknowledged, not retried for ever
    "validation failure": Row(invalid_customer, customer_created, True, "failed", 0, BOTH),
    "terminal error, other processor wrote": Row(
        klaviyo_fault(400, PROFILES), customer_created, True, "failed", 1, BOTH,
        accepted=(SUBSCRIBE,)),
    # anything else: redelivered; the other processor's write stands (and is idempotent)
    "retryable Klaviyo error, other processor wrote": Row(
        klaviyo_fault(503, PROFILES), customer_created, False, "redeliver", 1, BOTH,
        redeliver=("CustomerCreated",), accepted=(SUBSCRIBE,)),
    "retryable error in both": Row(
        ct_fault(503), customer_created, False, "redeliver", 0, BOTH, redeliver=BOTH),
    "refused credentials": Row(
        klaviyo_fault(401, SUBSCRIBE), customer_created, False, "redeliver", 1, BOTH,
        redeliver=("CustomerConsent",), accepted=(PROFILES,)),
}


@pytest.mark.parametrize("row", TABLE.values(), ids=TABLE.keys())
def test_acknowledge_or_redeliver(seam: Seam, row: Row) -> None:
    row.setup(seam.ct, seam.klaviyo)

    delivered = seam.deliver(row.delivery())

    assert delivered.acknowledged is row.acknowledged
    assert delivered.outcome == Outcome(row.status, row.writes, row.processors, row.redeliver)
    assert accepted(seam.klaviyo) == set(row.accepted)
    if row.status in ("malformed", "ignored"):
        assert seam.ct.api_requests() == [] and seam.klaviyo.requests == []


@pytest.mark.klaviyo_refusals("/attributes/email")  # the bad record, refused on purpose
def test_a_record_klaviyo_refuses_is_acknowledged_while_the_other_write_stands(
    seam: Seam,
) -> None:
    # Not an injected answer: the fake refuses the profile as Klaviyo would (an email it rejects).
    # The consent subscription of a refused email is refused too: both are terminal.
    ct_customer = {**copy.deepcopy(CUSTOMER), "email": "not-an-email"}
    seam.ct.add("customers", ct_customer)
    delivered = seam.deliver(message("CustomerCreated", ct_customer))
    assert delivered.acknowledged
    assert delivered.outcome.status == "failed" and delivered.outcome.processors == BOTH


def test_an_unexpected_failure_lets_the_others_run_then_fails_the_invocation(seam: Seam) -> None:
    """A bug in one processor (here a third one, registered beside the real two) must not cost
    the others their turn, nor be acknowledged with its own work lost."""
    def broken(message: CtMessage, ctx: Context) -> int:
        raise KeyError("a bug")

    buggy = Processor("Buggy", Trigger("customer", messages=frozenset({"CustomerCreated"})),
                      broken)
    valid_customer(seam.ct, seam.klaviyo)

    delivered = seam.deliver(customer_created(), [seam.processors[0], buggy,
                                                  *seam.processors[1:]])

    assert not delivered.acknowledged
    assert delivered.outcome == Outcome("redeliver", 2, ("CustomerCreated", "Buggy",
                                                         "CustomerConsent"), ("Buggy",))
    assert accepted(seam.klaviyo) == {PROFILES, SUBSCRIBE}  # both real processors wrote


def test_the_redelivery_after_a_partial_failure_completes_with_the_same_writes(
    seam: Seam,
) -> None:
    klaviyo_fault(503, PROFILES)(seam.ct, seam.klaviyo)
    assert not seam.deliver(customer_created()).acknowledged
    consents = klaviyo_state(seam.klaviyo)["consents"]
    seam.klaviyo.faults.clear()  # Klaviyo is back

    again = seam.deliver(customer_created())

    assert again.acknowledged and again.outcome == Outcome("processed", 2, BOTH)
    assert klaviyo_state(seam.klaviyo)["consents"] == consents  # sent again: nothing changed
    assert len(seam.klaviyo.profiles) == 1
    assert ("POST", PROFILES) in klaviyo_writes(seam.klaviyo)
