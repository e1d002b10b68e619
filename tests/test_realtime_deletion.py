"""GDPR deletion end to end: CustomerDeleted → realtime function → Klaviyo data-privacy job."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from shared.config import get_settings
from shared.log import JsonFormatter
from tests.fakes.commercetools import FakeCommercetools
from tests.fakes.klaviyo import FakeKlaviyo
from tests.realtime import RealtimeFunction

DELETION = "/api/data-privacy-deletion-jobs"
ENABLED = {"CUSTOMER_DELETION_ENABLED": "true"}


def customer_deleted(*, email: str | None = "jane@example.org", customer_id: str = "cust-1"
                     ) -> dict[str, Any]:
    message: dict[str, Any] = {
        "notificationType": "Message", "projectKey": "test-project", "id": "msg-del",
        "version": 1, "sequenceNumber": 7, "resource": {"typeId": "customer", "id": customer_id},
        "resourceVersion": 7, "type": "CustomerDeleted",
        "createdAt": "2026-04-01T00:00:00.000Z", "lastModifiedAt": "2026-04-01T00:00:00.000Z",
    }
    if email is not None:
        message["email"] = email  # commercetools added `email` to CustomerDeleted
    return message


def deletion_body(profile: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"type": "data-privacy-deletion-job",
                     "attributes": {"profile": {"data": profile}}}}


def test_deletion_is_off_by_default(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    profile_id = klaviyo.add_profile(email="jane@example.org", external_id="cust-1")

    assert realtime.deliver(customer_deleted()) == 200

    assert klaviyo.requests == [] and ct.api_requests() == []
    assert profile_id in klaviyo.profiles
    assert get_settings().customer_deletion_enabled is False


def test_deleted_customer_is_erased_by_the_email_in_the_message(
    make_realtime: Callable[..., RealtimeFunction], ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    realtime = make_realtime(**ENABLED)
    ours = klaviyo.add_profile(email="jane@example.org", external_id="cust-1")
    other = klaviyo.add_profile(email="someone@example.org")

    assert realtime.deliver(customer_deleted(email="Jane@Example.org")) == 200

    (request,) = klaviyo.requests
    assert (request.method, request.path, request.status) == ("POST", DELETION, 202)
    assert request.json == deletion_body({"type": "profile",
                                          "attributes": {"email": "Jane@Example.org"}})
    assert ours not in klaviyo.profiles and other in klaviyo.profiles
    assert ct.api_requests() == []  # the customer is gone: nothing to read


def test_without_email_the_profile_is_found_by_external_id(
    make_realtime: Callable[..., RealtimeFunction], klaviyo: FakeKlaviyo
) -> None:
    realtime = make_realtime(**ENABLED)
    ours = klaviyo.add_profile(email="jane@example.org", external_id="cust-1")

    assert realtime.deliver(customer_deleted(email=None)) == 200

    lookup, deletion = klaviyo.requests
    assert (lookup.method, lookup.path) == ("GET", "/api/profiles")
    assert lookup.query == {"filter": 'equals(external_id,"cust-1")'}
    assert deletion.json == deletion_body({"type": "profile", "id": ours, "attributes": {}})
    assert klaviyo.profiles == {}


def test_unknown_profile_without_email_deletes_nothing(
    make_realtime: Callable[..., RealtimeFunction], klaviyo: FakeKlaviyo
) -> None:
    realtime = make_realtime(**ENABLED)
    kept = klaviyo.add_profile(email="jane@example.org", external_id="other")

    assert realtime.deliver(customer_deleted(email=None)) == 200

    assert [r.method for r in klaviyo.requests] == ["GET"]
    assert kept in klaviyo.profiles


def test_deletion_retries_within_the_deadline_then_asks_for_redelivery(
    make_realtime: Callable[..., RealtimeFunction], klaviyo: FakeKlaviyo
) -> None:
    realtime = make_realtime(**ENABLED, REALTIME_DEADLINE_SECONDS="1.5")
    klaviyo.inject(429, path=DELETION, retry_after=0)
    assert realtime.deliver(customer_deleted()) == 200
    assert [r.status for r in klaviyo.requests_to("POST", DELETION)] == [429, 202]

    klaviyo.inject(503, times=1000, path=DELETION)
    assert realtime.deliver(customer_deleted()) == 500  # Pub/Sub will redeliver


def test_disabled_processor_overrides_the_setting(
    make_realtime: Callable[..., RealtimeFunction], klaviyo: FakeKlaviyo
) -> None:
    realtime = make_realtime(**ENABLED, DISABLED_PROCESSORS="CustomerDeleted")
    assert realtime.deliver(customer_deleted()) == 200
    assert klaviyo.requests == []


@pytest.mark.parametrize(("env", "subscribed"), [({}, False), (ENABLED, True)],
                         ids=["default", "enabled"])
def test_customer_deleted_is_asked_for_only_when_enabled(
    make_realtime: Callable[..., RealtimeFunction], env: dict[str, str], subscribed: bool
) -> None:
    """The CT subscription is derived from the enabled processors' triggers (deploy/)."""
    from shared.processors import enabled_processors

    make_realtime(**env)
    wanted = {m for p in enabled_processors(get_settings()) if p.trigger.resource == "customer"
              for m in p.trigger.messages}
    assert ("CustomerDeleted" in wanted) is subscribed


def test_deletion_logs_only_ids(
    make_realtime: Callable[...,
    RealtimeFunction],
    klaviyo: FakeKlaviyo,
    caplog: pytest.LogCaptureFixture
) -> None:
    realtime = make_realtime(**ENABLED)
    profile_id = klaviyo.add_profile(email="jane@example.org", external_id="cust-1")
    caplog.set_level(logging.DEBUG, logger="connector")

    assert realtime.deliver(customer_deleted()) == 200
    klaviyo.add_profile(email="jane@example.org", external_id="cust-1")
    assert realtime.deliver(customer_deleted(email=None)) == 200

    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records
             if r.name.startswith("connector")]
    requested = [line for line in lines if line["message"] == "klaviyo profile deletion requested"]
    assert [(line["ctCustomerId"], line["by"]) for line in requested] == [
        ("cust-1", "email"), ("cust-1", "externalId")]
    assert profile_id not in klaviyo.profiles
    assert "jane@example.org" not in json.dumps(lines)
