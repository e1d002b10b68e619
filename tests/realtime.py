"""End-to-end harness: the realtime function served by functions-framework, fed real CloudEvents.

`make_realtime(**env)` loads `realtime/main.py` exactly as Cloud Functions does, with its settings
pointed at the commercetools and Klaviyo fakes (plus any extra variables), and returns a
`RealtimeFunction` whose `deliver()` posts a Pub/Sub CloudEvent carrying a commercetools delivery.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app

from shared.config import get_settings
from shared.klaviyo import limiter

REALTIME_SOURCE = str(Path(__file__).resolve().parents[1] / "realtime" / "main.py")
_ids = itertools.count(1)


def pubsub_cloud_event(data: bytes, *, message_id: str | None = None) -> CloudEvent:
    message_id = message_id or f"pubsub-{next(_ids)}"
    return CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/demo-connector/topics/ct-messages",
            "id": message_id,
        },
        {
            "message": {
                "data": base64.b64encode(data).decode(),
                "attributes": {},
                "messageId": message_id,
                "publishTime": "2026-01-01T00:00:00Z",
            },
            "subscription": "projects/demo-connector/subscriptions/ct-messages-realtime",
        },
    )


class RealtimeFunction:
    def __init__(self, client: Any) -> None:
        self.client = client

    def deliver_bytes(self, data: bytes, *, structured: bool = False) -> int:
        event = pubsub_cloud_event(data)
        headers, body = to_structured(event) if structured else to_binary(event)
        return self.client.post("/", headers=headers, data=body).status_code

    def deliver(self, ct_delivery: dict[str, Any], *, structured: bool = False) -> int:
        """Post one commercetools delivery; returns the HTTP status (2xx = acknowledged)."""
        return self.deliver_bytes(json.dumps(ct_delivery).encode(), structured=structured)


@pytest.fixture
def make_realtime(
    ct_env: dict[str, str], klaviyo: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., RealtimeFunction]]:
    def make(**env: str) -> RealtimeFunction:
        variables = {
            **ct_env,
            "KLAVIYO_API_KEY": klaviyo.api_key,
            "KLAVIYO_BASE_URL": klaviyo.url,
            "REALTIME_DEADLINE_SECONDS": "5",
            **env,
        }
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        # Each test's function gets its own Klaviyo rate limiter: one shared by the whole test
        # process would make later tests wait for the quota earlier tests used.
        monkeypatch.setattr(limiter, "_shared", None)
        return RealtimeFunction(create_app("handle_ct_message", REALTIME_SOURCE).test_client())

    yield make
    get_settings.cache_clear()


@pytest.fixture
def realtime(make_realtime: Callable[..., RealtimeFunction]) -> RealtimeFunction:
    return make_realtime()
