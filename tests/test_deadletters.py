"""Dead-letter list and replay against the Pub/Sub emulator and the commercetools/Klaviyo fakes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from deploy import deadletters
from shared.config import get_settings
from tests.emulators import PROJECT
from tests.fakes.commercetools import FakeCommercetools
from tests.fakes.klaviyo import FakeKlaviyo

# (publish, subscription path, subscriber)
DeadLetters = tuple[Any, str, Any]

pytestmark = pytest.mark.emulator


def customer_message(customer_id: str, message_id: str, email: str = "x@example.com") -> dict:
    return {
        "notificationType": "Message", "projectKey": "test-project", "id": message_id,
        "version": 1, "sequenceNumber": 1, "resourceVersion": 1, "type": "CustomerCreated",
        "resource": {"typeId": "customer", "id": customer_id},
        "customer": {"id": customer_id, "version": 1, "email": email, "addresses": []},
        "createdAt": "2026-01-01T00:00:00.000Z", "lastModifiedAt": "2026-01-01T00:00:00.000Z",
    }


SUBSCRIPTION_TEST = {
    "notificationType": "ResourceCreated", "projectKey": "test-project", "version": 1,
    "resource": {"typeId": "subscription", "id": "a7c1fb22-0000-4000-8000-000000000000"},
    "modifiedAt": "2026-01-01T00:00:00.000Z",
}


@pytest.fixture
def dead_letters(pubsub_topic: str) -> Iterator[DeadLetters]:
    """(publish, subscription path, subscriber): a dead-letter topic with its pull subscription."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    subscription = subscriber.subscription_path(PROJECT, f"dl-{uuid.uuid4().hex[:10]}")
    subscriber.create_subscription(name=subscription, topic=pubsub_topic, ack_deadline_seconds=30)
    publisher = pubsub_v1.PublisherClient()

    def publish(payload: Any, attempts: int = 10) -> str:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        # the attributes Pub/Sub adds when it dead-letters a message
        return publisher.publish(
            pubsub_topic, data,
            CloudPubSubDeadLetterSourceDeliveryCount=str(attempts),
            CloudPubSubDeadLetterSourceSubscription="eventarc-europe-west1-ct-klaviyo-realtime-sub",
        ).result(timeout=10)

    yield publish, subscription, subscriber
    subscriber.delete_subscription(subscription=subscription)


def remaining(subscriber: Any, subscription: str) -> list[str]:
    """Message ids still in the subscription (pulled, then released)."""
    puller = deadletters.Puller(subscriber, subscription, wait=1)
    try:
        return sorted(d.message_id for d in puller.pull_all(100))
    finally:
        puller.release()


@pytest.fixture
def realtime_env(
    ct_env: dict[str, str], klaviyo: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    for name, value in {**ct_env, "KLAVIYO_API_KEY": klaviyo.api_key,
                        "KLAVIYO_BASE_URL": klaviyo.url, "REALTIME_DEADLINE_SECONDS": "2",
                        "GOOGLE_CLOUD_PROJECT": PROJECT}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_list_shows_ids_and_types_but_no_payload(
    dead_letters: DeadLetters, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    publish, subscription, subscriber = dead_letters
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    first = publish(customer_message("cust-1", "ct-msg-1", email="jane.doe@example.com"))
    second = publish(b"not json at all", attempts=7)

    assert deadletters.main(["list", "--subscription", subscription,
                             "--wait", "1".rsplit("/", 1)[-1]]) == 0
    out = capsys.readouterr().out
    assert first in out and second in out
    assert "customer" in out and "cust-1" in out and "CustomerCreated" in out and "ct-msg-1" in out
    assert "(not a commercetools delivery)" in out
    assert " 10 " in out and " 7 " in out  # failed delivery attempts before dead-lettering
    assert "jane.doe" not in out and "example.com" not in out  # no payload, no PII
    # listing acknowledged nothing
    assert remaining(subscriber, subscription) == sorted([first, second])


def test_replay_acks_only_what_went_through(
    dead_letters: DeadLetters, realtime_env: None, ct: FakeCommercetools, klaviyo: FakeKlaviyo,
    capsys: pytest.CaptureFixture[str]
) -> None:
    publish, subscription, subscriber = dead_letters
    ct.add("customers", {"id": "cust-ok", "email": "ok@example.com", "firstName": "Ok",
                         "addresses": []})
    ct.add("customers", {"id": "cust-down", "email": "down@example.com", "addresses": []})
    ct.inject(503, times=None, path="cust-down")  # commercetools keeps failing for this one

    ok = publish(customer_message("cust-ok", "ct-msg-ok"))
    down = publish(customer_message("cust-down", "ct-msg-down"))
    test_message = publish(SUBSCRIPTION_TEST)
    garbage = publish(b"\x00garbage")

    code = deadletters.main(["replay", "--all", "--subscription", subscription, "--wait", "1"])
    out = capsys.readouterr().out
    assert code == 1  # some were kept
    assert klaviyo.find_profile(email="ok@example.com") is not None
    assert klaviyo.find_profile(email="down@example.com") is None
    # processed and ignored ones are acknowledged; retryable and malformed ones stay
    assert remaining(subscriber, subscription) == sorted([down, garbage])
    assert f"acknowledged  {ok}" in out and f"acknowledged  {test_message}" in out
    assert f"kept          {down}" in out and "retryable failure" in out
    assert "down@example.com" not in out

    # once commercetools is back, replaying the one by its CT message id clears it
    ct.reset()
    ct.add("customers", {"id": "cust-down", "email": "down@example.com", "addresses": []})
    assert deadletters.main(["replay", "--ids", "ct-msg-down", "--subscription", subscription,
                             "--wait", "1"]) == 0
    assert klaviyo.find_profile(email="down@example.com") is not None
    assert remaining(subscriber, subscription) == [garbage]

    # a terminal failure is only dropped on request
    assert deadletters.main(["replay", "--ids", garbage, "--subscription", subscription,
                             "--wait", "1"]) == 1
    assert remaining(subscriber, subscription) == [garbage]
    assert deadletters.main(["replay", "--ids", garbage, "--drop-failed",
                             "--subscription", subscription, "--wait", "1"]) == 0
    assert remaining(subscriber, subscription) == []


def test_replay_of_unknown_id_touches_nothing(
    dead_letters: DeadLetters, realtime_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    publish, subscription, subscriber = dead_letters
    kept = publish(customer_message("cust-1", "ct-msg-1"))
    calls: list[Any] = []
    code = deadletters.main(["replay", "--ids", "nope", "--subscription", subscription,
                             "--wait", "1"],
                            runner=lambda: calls.append)
    assert code == 1 and calls == []
    assert "not found: nope" in capsys.readouterr().err
    assert remaining(subscriber, subscription) == [kept]
