"""Smoke tests: the real Firestore and Pub/Sub emulators start and behave (used by the bulk
sync)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.emulators import PROJECT

pytestmark = pytest.mark.emulator


def test_firestore_transaction_creates_lock_only_once(firestore_db: Any) -> None:
    from google.cloud import firestore

    ref = firestore_db.collection("locks").document("customers")

    @firestore.transactional
    def acquire(transaction: Any, owner: str) -> bool:
        if ref.get(transaction=transaction).exists:
            return False
        transaction.create(ref, {"owner": owner})
        return True

    assert acquire(firestore_db.transaction(), "a") is True
    assert acquire(firestore_db.transaction(), "b") is False
    assert ref.get().to_dict() == {"owner": "a"}


def test_firestore_is_wiped_between_tests(firestore_db: Any) -> None:
    assert not firestore_db.collection("locks").document("customers").get().exists


def test_pubsub_publish_pull_ack(pubsub_topic: str) -> None:
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

    subscriber = SubscriberClient()
    subscription = subscriber.subscription_path(PROJECT, f"s-{uuid.uuid4().hex[:10]}")
    subscriber.create_subscription(name=subscription, topic=pubsub_topic)
    try:
        publisher = PublisherClient()
        publisher.publish(pubsub_topic, b'{"page": 1}', kind="page-task").result(timeout=10)
        response = subscriber.pull(subscription=subscription, max_messages=10, timeout=10)
        assert [m.message.data for m in response.received_messages] == [b'{"page": 1}']
        assert response.received_messages[0].message.attributes["kind"] == "page-task"
        subscriber.acknowledge(
            subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages]
        )
        again = subscriber.pull(subscription=subscription, max_messages=10, timeout=3)
        assert again.received_messages == []
    finally:
        subscriber.delete_subscription(subscription=subscription)
