"""Marketing consent end to end: customer messages → realtime function → CT and Klaviyo fakes."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from shared.config import get_settings
from shared.errors import ConfigError
from shared.log import JsonFormatter
from shared.processors import all_processors
from tests.fakes.commercetools import FakeCommercetools
from tests.fakes.klaviyo import FakeKlaviyo
from tests.realtime import RealtimeFunction

CUSTOMER: dict[str, Any] = {
    "id": "cust-1",
    "version": 3,
    "email": "jane@example.org",
    "firstName": "Jane",
    "createdAt": "2026-01-01T00:00:00.000Z",
    "lastModifiedAt": "2026-01-05T08:00:00.000Z",
    "addresses": [{"id": "a1", "city": "London", "country": "GB", "mobile": "+44 7700 900123"}],
    "custom": {"type": {"typeId": "type", "id": "t-1"},
               "fields": {"newsletter": True, "loyalty": "gold"}},
}
CONSENT_ENV = {"CONSENT_FIELD": "newsletter", "CONSENT_LIST_ID": "LIST1"}
SUBSCRIBE = "/api/profile-subscription-bulk-create-jobs"
UNSUBSCRIBE = "/api/profile-subscription-bulk-delete-jobs"
LIST = {"list": {"data": {"type": "list", "id": "LIST1"}}}


def with_fields(**fields: Any) -> dict[str, Any]:
    customer = copy.deepcopy(CUSTOMER)
    customer["custom"]["fields"] = {"loyalty": "gold", **fields}
    return customer


def message(type_: str, customer: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "notificationType": "Message", "projectKey": "test-project", "id": f"msg-{type_}",
        "version": 1, "sequenceNumber": 4, "resource": {"typeId": "customer", "id": "cust-1"},
        "resourceVersion": 4, "type": type_,
        "createdAt": "2026-01-05T08:00:00.000Z", "lastModifiedAt": "2026-01-05T08:00:00.000Z",
        **fields,
    }
    if customer is not None:
        body["customer"] = customer
    return body


def field_changed(name: str, value: Any, previous: Any = None) -> dict[str, Any]:
    return message("CustomerCustomFieldChanged", name=name, value=value, previousValue=previous)


def subscription_requests(klaviyo: Any) -> list[Any]:
    return klaviyo.requests_to("POST", "/api/profile-subscription-bulk-")


def subscribe_body(attributes: dict[str, Any], *, historical: bool = True) -> dict[str, Any]:
    job: dict[str, Any] = {
        "profiles": {"data": [{"type": "profile", "attributes": attributes}]},
        "custom_source": "commercetools",
    }
    if historical:
        job["historical_import"] = True
    return {"data": {"type": "profile-subscription-bulk-create-job", "attributes": job,
                     "relationships": LIST}}


EMAIL_SUBSCRIBED = {"email": "jane@example.org", "subscriptions": {"email": {"marketing": {
    "consent": "SUBSCRIBED", "consented_at": "2026-01-05T08:00:00.000Z"}}}}
EMAIL_UNSUBSCRIBE = {"data": {
    "type": "profile-subscription-bulk-delete-job",
    "attributes": {"profiles": {"data": [{"type": "profile", "attributes": {
        "email": "jane@example.org",
        "subscriptions": {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}}}}]}},
    "relationships": LIST,
}}


@pytest.fixture
def consent(make_realtime: Any) -> Any:
    return make_realtime(**CONSENT_ENV)


def test_no_consent_field_configured_sends_nothing(
    realtime: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", CUSTOMER)

    for delivery in (message("CustomerCreated", CUSTOMER), field_changed("newsletter", True),
                     message("CustomerCustomFieldRemoved", name="newsletter")):
        assert realtime.deliver(delivery) == 200

    assert subscription_requests(klaviyo) == []
    assert {r.path for r in klaviyo.requests} == {"/api/profile-import"}  # the profile only
    assert klaviyo.consents == {}
    (consent,) = [p for p in all_processors(get_settings()) if p.name == "CustomerConsent"]
    assert not consent.trigger.messages and not consent.trigger.changes


def test_customer_created_with_consent_subscribes_to_the_list(
    consent: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", CUSTOMER)

    assert consent.deliver(message("CustomerCreated", CUSTOMER)) == 200

    upsert, subscribe = klaviyo.requests  # the profile first (processor order), then consent
    assert upsert.path == "/api/profile-import"
    assert subscribe.path == SUBSCRIBE and subscribe.status == 202
    assert subscribe.json == subscribe_body(EMAIL_SUBSCRIBED)
    found = klaviyo.find_profile(external_id="cust-1")
    assert found is not None
    profile_id = found["id"]
    assert klaviyo.consents[profile_id]["email"]["consent"] == "SUBSCRIBED"
    assert klaviyo.list_members == {"LIST1": {profile_id}}


@pytest.mark.parametrize("fields", [{"newsletter": False}, {}, {"newsletter": None}],
                         ids=["declined", "absent", "null"])
def test_customer_created_without_consent_sends_nothing_about_it(
    consent: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo,
    fields: dict[str, Any]
) -> None:
    """Nothing to withdraw at creation; an unsubscribe would override consent given elsewhere."""
    customer = with_fields(**fields)
    ct.add("customers", customer)

    assert consent.deliver(message("CustomerCreated", customer)) == 200
    assert subscription_requests(klaviyo) == []


def test_consent_withdrawn_unsubscribes(
    consent: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", CUSTOMER)
    assert consent.deliver(message("CustomerCreated", CUSTOMER)) == 200
    ct.add("customers", with_fields(newsletter=False))

    assert consent.deliver(field_changed("newsletter", False, True)) == 200

    subscribe, unsubscribe = subscription_requests(klaviyo)
    assert unsubscribe.path == UNSUBSCRIBE and unsubscribe.status == 202
    assert unsubscribe.json == EMAIL_UNSUBSCRIBE
    found = klaviyo.find_profile(email="jane@example.org")
    assert found is not None
    profile_id = found["id"]
    assert klaviyo.consents[profile_id]["email"]["consent"] == "UNSUBSCRIBED"
    assert klaviyo.list_members == {"LIST1": set()}


def test_consent_field_removed_unsubscribes(
    consent: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", with_fields())

    assert consent.deliver(message("CustomerCustomFieldRemoved", name="newsletter")) == 200

    (request,) = subscription_requests(klaviyo)
    assert request.json == EMAIL_UNSUBSCRIBE


def test_consent_given_later_subscribes(
    consent: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", CUSTOMER)

    assert consent.deliver(
        message("CustomerCustomFieldAdded", name="newsletter", value=True)) == 200

    (request,) = subscription_requests(klaviyo)
    assert request.json == subscribe_body(EMAIL_SUBSCRIBED)


def test_other_field_changes_send_nothing_about_consent(
    consent: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", with_fields(newsletter=False))

    assert consent.deliver(field_changed("loyalty", "silver", "gold")) == 200

    assert subscription_requests(klaviyo) == []
    # read by the profile sync only (then once more to confirm its version did not move on)
    assert len(ct.api_requests("customers")) == 2


def test_change_notification_never_unsubscribes(
    consent: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    """ResourceUpdated does not say what changed: the consent processor does not listen to it."""
    ct.add("customers", with_fields(newsletter=False))
    change = {"notificationType": "ResourceUpdated", "projectKey": "test-project",
              "resource": {"typeId": "customer", "id": "cust-1"}, "version": 5, "oldVersion": 4,
              "modifiedAt": "2026-01-05T08:00:00.000Z"}

    assert consent.deliver(change) == 200
    assert subscription_requests(klaviyo) == []


def test_the_current_value_wins_over_a_late_message(
    consent: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    """A "yes" delivered after the customer already said "no" again must not subscribe."""
    ct.add("customers", with_fields(newsletter=False))

    assert consent.deliver(field_changed("newsletter", True, False)) == 200

    (request,) = subscription_requests(klaviyo)
    assert request.json == EMAIL_UNSUBSCRIBE


def test_enum_field_and_sms_channel(
    make_realtime: Callable[..., RealtimeFunction], ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    realtime = make_realtime(CONSENT_FIELD="marketing", CONSENT_SMS_FIELD="sms",
                             CONSENT_LIST_ID="LIST1", CONSENT_GRANTED_VALUES="opt-in",
                             CONSENT_WITHDRAWN_VALUES="opt-out")
    customer = with_fields(marketing={"key": "opt-out", "label": "No"},
                           sms={"key": "opt-in", "label": {"en": "Yes"}})
    ct.add("customers", customer)

    assert realtime.deliver(message("CustomerCustomTypeSet", customFields=customer["custom"],
                                    previousTypeId=None)) == 200

    subscribe, unsubscribe = subscription_requests(klaviyo)
    assert subscribe.json == subscribe_body({
        "phone_number": "+447700900123",
        "subscriptions": {"sms": {"marketing": {
            "consent": "SUBSCRIBED", "consented_at": "2026-01-05T08:00:00.000Z"}}}})
    assert unsubscribe.json == EMAIL_UNSUBSCRIBE
    assert klaviyo.find_profile(phone_number="+447700900123") is not None


def test_sms_field_change_touches_sms_only(
    make_realtime: Callable[..., RealtimeFunction], ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    realtime = make_realtime(CONSENT_FIELD="newsletter", CONSENT_SMS_FIELD="sms",
                             CONSENT_LIST_ID="LIST1")
    ct.add("customers", with_fields(newsletter=True, sms=False))

    assert realtime.deliver(field_changed("sms", False, True)) == 200

    (request,) = subscription_requests(klaviyo)
    assert request.path == UNSUBSCRIBE
    assert request.json["data"]["attributes"]["profiles"]["data"] == [{
        "type": "profile", "attributes": {
            "phone_number": "+447700900123",
            "subscriptions": {"sms": {"marketing": {"consent": "UNSUBSCRIBED"}}}}}]


def test_without_historical_import_klaviyo_dates_the_consent(
    make_realtime: Callable[..., RealtimeFunction], ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    realtime = make_realtime(**CONSENT_ENV, CONSENT_HISTORICAL_IMPORT="false")
    ct.add("customers", CUSTOMER)

    assert realtime.deliver(message("CustomerEmailChanged", email="jane@example.org")) == 200

    (request,) = subscription_requests(klaviyo)
    assert request.json == subscribe_body(
        {"email": "jane@example.org",
         "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}}},
        historical=False)
    assert request.status == 202


def test_rejected_subscription_is_acknowledged(
    consent: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", CUSTOMER)
    klaviyo.inject(400, path=SUBSCRIBE)

    assert consent.deliver(message("CustomerCreated", CUSTOMER)) == 200
    assert [r.status for r in subscription_requests(klaviyo)] == [400]
    assert klaviyo.find_profile(external_id="cust-1") is not None  # the profile still synced


def test_throttled_subscription_is_retried(
    consent: RealtimeFunction, ct: FakeCommercetools, klaviyo: FakeKlaviyo
) -> None:
    ct.add("customers", CUSTOMER)
    klaviyo.inject(429, path=SUBSCRIBE, retry_after=0)

    assert consent.deliver(message("CustomerCreated", CUSTOMER)) == 200
    assert [r.status for r in subscription_requests(klaviyo)] == [429, 202]


def test_list_id_is_required_with_a_consent_field(
    make_realtime: Callable[..., RealtimeFunction]
) -> None:
    with pytest.raises(ConfigError, match="CONSENT_LIST_ID"):
        make_realtime(CONSENT_FIELD="newsletter")


def test_consent_logs_carry_no_pii(
    consent: RealtimeFunction,
    ct: FakeCommercetools,
    klaviyo: FakeKlaviyo,
    caplog: pytest.LogCaptureFixture
) -> None:
    ct.add("customers", CUSTOMER)
    caplog.set_level(logging.DEBUG, logger="connector")

    assert consent.deliver(message("CustomerCreated", CUSTOMER)) == 200
    ct.add("customers", with_fields(newsletter=False))
    assert consent.deliver(field_changed("newsletter", False)) == 200

    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records
             if r.name.startswith("connector")]
    messages = {line["message"] for line in lines}
    assert {"consent subscribed", "consent unsubscribed"} <= messages
    text = json.dumps(lines)
    for pii in ("jane@example.org", "Jane", "7700", "London"):
        assert pii not in text
