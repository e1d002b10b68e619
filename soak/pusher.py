"""Push delivery with Pub/Sub's documented retry policy, over pull subscriptions of the emulator.

Why not the emulator's own push subscriptions (cloud-pubsub-emulator 0.8.20, read from its
bytecode, `com.google.cloud.pubsub.testing.v1`):
- `PushLoop`: after a refused push it sets the message's ack deadline to now + 1 s
  (`PUSH_RETRY_AFTER_FAIL_DELAY_MS = 1000`), whatever the retry policy says. The first
  redelivery therefore comes after ~1 s, not after `minimum_backoff`.
- `MessageBacklog`: from the second failure on, a subscription with a retry policy puts the message
  in `delayedMessagesByTime` (backoff base 1.3, whole seconds). `insertDelayedMessage` guards
  against duplicates only where the message is alone under its due time, so messages that fail
  together are queued again on every pull; when the first copy fires, the next one finds the
  ack id gone (`delivered.get(..)` is null) and `nackMessage` throws a NullPointerException inside
  the 1 s `scheduleAtFixedRate` task, which catches only `StatusException`. A scheduled task that
  throws is never run again: from then on no delayed message of that subscription is delivered.
  That is the "pushed twice, then never again" the auth-outage window saw.
- Dead lettering itself works (delivery attempts are counted on every expiry; past
  `max_delivery_attempts` the message goes to the dead-letter topic), and ack deadlines set with
  ModifyAckDeadline are honoured on subscriptions without a retry policy.

So this module keeps the emulator as the queue (delivery counting, ack deadlines, redelivery,
dead lettering) and replaces only its push loop: pull subscriptions with deploy's dead-letter
policy and no retry policy; `workers` threads (instances × per-instance concurrency, as Cloud
Run would run them) each pull one message, POST it to an instance in the push format, ack on a
2xx, and otherwise set the ack deadline to the retry policy's backoff (exponential from
`min_backoff`, doubling, capped at `max_backoff`, as Pub/Sub documents), after which the emulator
redelivers it, or dead-letters it once the attempts are used up.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from soak.common import ACK_DEADLINE_SECONDS, MAX_DELIVERY_ATTEMPTS, PROJECT

ACK_STATUSES = frozenset({102, 200, 201, 202, 204})  # what Pub/Sub push takes as an ack


def backoff(attempt: int, min_backoff: float, max_backoff: float) -> float:
    """The wait before delivery `attempt + 1` after delivery `attempt` failed."""
    return float(min(max_backoff, min_backoff * 2 ** max(0, attempt - 1)))


@dataclass
class Pusher:
    subscriber: Any
    endpoints: Sequence[str]  # one per instance
    dead_letter_topic: str
    concurrency: int = 4  # requests at once per instance (deploy: --concurrency=4)
    max_attempts: int = MAX_DELIVERY_ATTEMPTS
    min_backoff: float = 10.0
    max_backoff: float = 600.0
    ack_deadline: int = ACK_DEADLINE_SECONDS
    subscriptions: list[str] = field(default_factory=list)
    answers: Counter[int] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def subscribe(self, topic: str) -> str:
        """A pull subscription of `topic` with deploy's dead-letter policy, no retry policy."""
        name = self.subscriber.subscription_path(PROJECT, f"soak-pusher-{uuid.uuid4().hex[:10]}")
        self.subscriber.create_subscription(request={
            "name": name, "topic": topic, "ack_deadline_seconds": self.ack_deadline,
            "dead_letter_policy": {"dead_letter_topic": self.dead_letter_topic,
                                   "max_delivery_attempts": self.max_attempts},
        })
        self.subscriptions.append(name)
        return name

    def start(self) -> None:
        for i in range(len(self.endpoints) * self.concurrency):
            thread = threading.Thread(target=self._work, args=(i,), daemon=True,
                                      name=f"soak-pusher-{i}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.ack_deadline + 5)
        self._threads.clear()
        for name in self.subscriptions:
            try:
                self.subscriber.delete_subscription(subscription=name)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.subscriptions.clear()

    def _work(self, index: int) -> None:
        endpoint = self.endpoints[index % len(self.endpoints)]
        session = requests.Session()
        turn = index
        while not self._stop.is_set():
            got = False
            for k in range(len(self.subscriptions)):
                subscription = self.subscriptions[(turn + k) % len(self.subscriptions)]
                try:
                    response = self.subscriber.pull(subscription=subscription, max_messages=1,
                                                    return_immediately=True, timeout=10)
                except Exception:  # noqa: BLE001 - the emulator is busy: try again
                    continue
                for received in response.received_messages:
                    got = True
                    self._deliver(session, endpoint, subscription, received)
            turn += 1
            if not got:
                self._stop.wait(0.1)
        session.close()

    def _deliver(self, session: requests.Session, endpoint: str, subscription: str,
                 received: Any) -> None:
        message = received.message
        publish_time = message.publish_time.isoformat() if message.publish_time else None
        body = {"message": {"data": base64.b64encode(bytes(message.data)).decode(),
                            "attributes": dict(message.attributes),
                            "messageId": message.message_id, "message_id": message.message_id,
                            "publishTime": publish_time, "publish_time": publish_time},
                "subscription": subscription,
                "deliveryAttempt": received.delivery_attempt}
        try:
            status = session.post(endpoint, json=body, timeout=self.ack_deadline).status_code
        except requests.RequestException:
            status = 0  # no answer: a failed push, as for Pub/Sub
        self.answers[status] += 1
        try:
            if status in ACK_STATUSES:
                self.subscriber.acknowledge(subscription=subscription,
                                            ack_ids=[received.ack_id])
            else:
                wait = backoff(received.delivery_attempt or 1, self.min_backoff,
                               self.max_backoff)
                self.subscriber.modify_ack_deadline(subscription=subscription,
                                                    ack_ids=[received.ack_id],
                                                    ack_deadline_seconds=max(1, round(wait)))
        except Exception:  # noqa: BLE001 - the ack deadline lapses: redelivered, as in Pub/Sub
            time.sleep(0.1)
