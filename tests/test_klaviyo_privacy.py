"""KlaviyoClient consent and deletion calls (shared/klaviyo/privacy.py) against the fake Klaviyo."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import KlaviyoError
from shared.klaviyo import KlaviyoClient
from tests.fakes.klaviyo import FakeKlaviyo

EMAIL_SUB = {"email": "a@shop.example", "subscriptions": {"email": {"marketing": {
    "consent": "SUBSCRIBED", "consented_at": "2026-01-01T00:00:00Z"}}}}
EMAIL_UNSUB = {"email": "a@shop.example",
               "subscriptions": {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}}}


def test_subscribe_body_and_state(klaviyo_client: KlaviyoClient, klaviyo: FakeKlaviyo) -> None:
    klaviyo_client.subscribe_profiles([EMAIL_SUB], list_id="L1", historical_import=True,
                                      custom_source="commercetools")

    (request,) = klaviyo.requests
    assert (request.path, request.status) == ("/api/profile-subscription-bulk-create-jobs", 202)
    assert request.header("content-type") == "application/vnd.api+json"
    assert request.json == {"data": {
        "type": "profile-subscription-bulk-create-job",
        "attributes": {"profiles": {"data": [{"type": "profile", "attributes": EMAIL_SUB}]},
                       "custom_source": "commercetools", "historical_import": True},
        "relationships": {"list": {"data": {"type": "list", "id": "L1"}}},
    }}
    (profile_id,) = klaviyo.profiles
    assert klaviyo.consents[profile_id]["email"]["consented_at"] == "2026-01-01T00:00:00Z"
    assert klaviyo.list_members == {"L1": {profile_id}}


def test_unsubscribe_body_without_list(klaviyo_client: KlaviyoClient, klaviyo: FakeKlaviyo) -> None:
    klaviyo_client.unsubscribe_profiles([EMAIL_UNSUB])

    (request,) = klaviyo.requests
    assert request.json == {"data": {
        "type": "profile-subscription-bulk-delete-job",
        "attributes": {"profiles": {"data": [{"type": "profile", "attributes": EMAIL_UNSUB}]}},
    }}
    assert request.status == 202


@pytest.mark.parametrize(
    ("call", "count"),
    [("subscribe_profiles", 0), ("subscribe_profiles", 1001), ("unsubscribe_profiles", 0),
     ("unsubscribe_profiles", 101)],
)
def test_batch_limits_are_checked_before_sending(
    klaviyo_client: KlaviyoClient, klaviyo: FakeKlaviyo, call: str, count: int
) -> None:
    with pytest.raises(ValueError):
        getattr(klaviyo_client, call)([EMAIL_UNSUB] * count)
    assert klaviyo.requests == []


@pytest.mark.parametrize(
    ("profile", "historical", "pointer"),
    [
        (EMAIL_SUB, False, "/subscriptions/email/marketing/consented_at"),  # needs the flag
        ({"email": "a@shop.example", "subscriptions": {"email": {"marketing": {
            "consent": "SUBSCRIBED"}}}}, True, "/subscriptions/email/marketing/consented_at"),
        ({"email": "a@shop.example", "subscriptions": {"email": {"marketing": {
            "consent": "SUBSCRIBED", "consented_at": "2999-01-01T00:00:00Z"}}}}, True,
         "/subscriptions/email/marketing/consented_at"),
        ({"subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}}}, False,
         "/attributes/email"),
        ({"phone_number": "07700 900123", "subscriptions": {"sms": {"marketing": {
            "consent": "SUBSCRIBED"}}}}, False, "/attributes/phone_number"),
        ({"email": "a@shop.example", "external_id": "c1", "subscriptions": {"email": {
            "marketing": {"consent": "SUBSCRIBED"}}}}, False, "/attributes/external_id"),
        ({"email": "a@shop.example", "subscriptions": {"email": {"marketing": {
            "consent": "UNSUBSCRIBED"}}}}, False, "/subscriptions/email/marketing/consent"),
    ],
    ids=["consented-at-without-flag", "flag-without-consented-at", "future", "no-email",
         "not-e164", "unknown-attribute", "wrong-consent"],
)
@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
def test_fake_rejects_what_klaviyo_rejects(
    klaviyo_client: KlaviyoClient,
    klaviyo: FakeKlaviyo,
    profile: dict[str, Any],
    historical: bool,
    pointer: str,
) -> None:
    with pytest.raises(KlaviyoError) as info:
        klaviyo_client.subscribe_profiles([profile], historical_import=historical)
    assert info.value.status == 400
    (error,) = info.value.errors
    assert error["source"]["pointer"].endswith(pointer)
    assert klaviyo.profiles == {}


@pytest.mark.parametrize(
    ("kwargs", "profile"),
    [
        ({"email": "a@shop.example"},
         {"type": "profile", "attributes": {"email": "a@shop.example"}}),
        ({"phone_number": "+447700900123"},
         {"type": "profile", "attributes": {"phone_number": "+447700900123"}}),
        ({"profile_id": "01ABC"}, {"type": "profile", "id": "01ABC", "attributes": {}}),
    ],
)
def test_deletion_bodies(
    klaviyo_client: KlaviyoClient,
    klaviyo: FakeKlaviyo,
    kwargs: dict[str, Any],
    profile: dict[str, Any],
) -> None:
    klaviyo_client.request_profile_deletion(**kwargs)

    (request,) = klaviyo.requests
    assert (request.path, request.status) == ("/api/data-privacy-deletion-jobs", 202)
    assert request.json == {"data": {"type": "data-privacy-deletion-job",
                                     "attributes": {"profile": {"data": profile}}}}


@pytest.mark.klaviyo_refusals  # sends requests Klaviyo refuses, on purpose
@pytest.mark.parametrize("kwargs", [{}, {"email": "a@shop.example", "profile_id": "01ABC"}])
def test_deletion_needs_exactly_one_identifier(
    klaviyo_client: KlaviyoClient, klaviyo: FakeKlaviyo, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        klaviyo_client.request_profile_deletion(**kwargs)
    # and the fake says so too, like Klaviyo ("If multiple identifiers are provided ... error")
    with pytest.raises(KlaviyoError) as info:
        klaviyo_client.request("POST", "/api/data-privacy-deletion-jobs", json={"data": {
            "type": "data-privacy-deletion-job", "attributes": {"profile": {"data": {
                "type": "profile", "attributes": {"email": "a@shop.example",
                                                  "phone_number": "+447700900123"}}}}}})
    assert info.value.status == 400


def test_deletion_removes_every_profile_with_the_email(
    klaviyo_client: KlaviyoClient, klaviyo: FakeKlaviyo
) -> None:
    first = klaviyo.add_profile(email="a@shop.example")
    second = klaviyo.add_profile(email="A@Shop.Example", external_id="c1")
    kept = klaviyo.add_profile(email="b@shop.example")

    klaviyo_client.request_profile_deletion(email="a@shop.example")

    assert set(klaviyo.profiles) == {kept}
    assert klaviyo.deletion_jobs == [{"identifier": {"email": "a@shop.example"},
                                      "deleted": [first, second]}]
