"""What the Pub/Sub emulator does with failed deliveries, pinned: the reason soak/pusher.py exists,
and the ground its proofs stand on.

- Pull subscriptions (what soak/pusher.py uses): an ack deadline set with ModifyAckDeadline is
  honoured, every expiry counts a delivery attempt, and after `max_delivery_attempts` the message
  moves to the dead-letter topic with its source delivery count.
- Push subscriptions with a retry policy (what deploy.sh configures, and what real Pub/Sub
  honours): messages refused together are pushed a few times within seconds, then never again
  (cloud-pubsub-emulator 0.8.20). If this test starts failing, the emulator was fixed and the
  soak could go back to its push subscriptions.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.emulators import PROJECT, PUBSUB_BIN, Emulator


@pytest.fixture
def clients(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[tuple[Any, Any]]:
    log = (tmp_path_factory.mktemp("emulator-delivery") / "pubsub.log").open("wb")
    emulator = Emulator(PUBSUB_BIN, log)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
    from google.cloud import pubsub_v1

    yield pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    emulator.stop()
    log.close()


def _topic(publisher: Any, name: str) -> str:
    path = publisher.topic_path(PROJECT, name)
    publisher.create_topic(name=path)
    return str(path)


@pytest.mark.emulator
@pytest.mark.timeout(120)
def test_pull_ack_deadlines_count_attempts_and_dead_letter(clients: tuple[Any, Any]) -> None:
    publisher, subscriber = clients
    dead_topic = _topic(publisher, "dead-letters")
    dead_sub = subscriber.subscription_path(PROJECT, "dead-letter-reader")
    subscriber.create_subscription(name=dead_sub, topic=dead_topic)
    topic = _topic(publisher, "deliveries")
    sub = subscriber.subscription_path(PROJECT, "pulled")
    subscriber.create_subscription(request={
        "name": sub, "topic": topic, "ack_deadline_seconds": 60,
        "dead_letter_policy": {"dead_letter_topic": dead_topic, "max_delivery_attempts": 5}})
    for n in range(3):
        publisher.publish(topic, b"x", n=str(n)).result()
    start = time.monotonic()
    seen: dict[str, list[tuple[float, int]]] = {}
    dead: dict[str, str] = {}
    while len(dead) < 3 and time.monotonic() - start < 60:
        for received in subscriber.pull(subscription=sub, max_messages=10,
                                        return_immediately=True).received_messages:
            n = received.message.attributes["n"]
            seen.setdefault(n, []).append((time.monotonic() - start, received.delivery_attempt))
            # A refused delivery: back off `attempt` seconds, as soak/pusher.py does.
            subscriber.modify_ack_deadline(subscription=sub, ack_ids=[received.ack_id],
                                           ack_deadline_seconds=received.delivery_attempt)
        for received in subscriber.pull(subscription=dead_sub, max_messages=10,
                                        return_immediately=True).received_messages:
            attributes = received.message.attributes
            dead[attributes["n"]] = attributes["CloudPubSubDeadLetterSourceDeliveryCount"]
            subscriber.acknowledge(subscription=dead_sub, ack_ids=[received.ack_id])
        time.sleep(0.1)
    assert dead == {"0": "5", "1": "5", "2": "5"}
    for deliveries in seen.values():
        assert [attempt for _, attempt in deliveries] == [1, 2, 3, 4, 5]
        gaps = [b[0] - a[0] for a, b in zip(deliveries, deliveries[1:], strict=False)]
        for attempt, gap in enumerate(gaps, start=1):
            assert attempt - 0.1 <= gap <= attempt + 1.5, (attempt, gaps)  # the backoff held


@pytest.mark.emulator
@pytest.mark.timeout(120)
def test_push_with_a_retry_policy_stops_redelivering(clients: tuple[Any, Any]) -> None:
    from google.protobuf import duration_pb2

    publisher, subscriber = clients
    pushes: list[tuple[float, str]] = []
    start = time.monotonic()

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            pushes.append((time.monotonic() - start, body["message"]["attributes"]["n"]))
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dead_topic = _topic(publisher, "dead-letters")
        topic = _topic(publisher, "pushed")
        sub = subscriber.subscription_path(PROJECT, "pushed-with-retry-policy")
        subscriber.create_subscription(request={
            "name": sub, "topic": topic, "ack_deadline_seconds": 10,
            "push_config": {"push_endpoint": f"http://127.0.0.1:{server.server_port}/"},
            "retry_policy": {"minimum_backoff": duration_pb2.Duration(seconds=2),
                             "maximum_backoff": duration_pb2.Duration(seconds=5)},
            "dead_letter_policy": {"dead_letter_topic": dead_topic,
                                   "max_delivery_attempts": 100}})
        for n in range(6):
            publisher.publish(topic, b"x", n=str(n)).result()
        time.sleep(25)  # Pub/Sub would push each again at least every 5 s: 5 times or more
        subscriber.delete_subscription(subscription=sub)
    finally:
        server.shutdown()
    per_message = Counter(n for _, n in pushes)
    assert len(per_message) == 6
    assert max(per_message.values()) <= 4, per_message  # the emulator stopped early
    assert max(t for t, _ in pushes) < 20, pushes
