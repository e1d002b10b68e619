"""The fast seam: `dispatch()` called directly, with a real `Context` over the HTTP fakes.

No functions-framework, no CloudEvent, no mocks of our code: the delivery goes through the real
decoding, the real processors (`all_processors(settings)`), the real clients over HTTP and the
commercetools and Klaviyo fakes. `Seam.deliver()` returns dispatch's `Outcome` for an
acknowledged delivery, and the `Outcome` carried by `RedeliveryRequested` for one Pub/Sub would
deliver again (with `acknowledged` saying which it was).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.commercetools.client import CommercetoolsClient
from shared.config import Settings, load_settings
from shared.deadline import Deadline
from shared.klaviyo import KlaviyoClient
from shared.processors import Context, Processor, all_processors
from shared.processors.dispatch import Outcome, RedeliveryRequested, dispatch
from tests.fakes.commercetools import FakeCommercetools
from tests.fakes.klaviyo import FakeKlaviyo

# Every processor has a trigger with these: consent needs a field and a list, deletion is opt-in.
CONTRACT_SETTINGS: dict[str, Any] = {
    "consent_field": "newsletter",
    "consent_list_id": "LIST1",
    "customer_deletion_enabled": True,
    "preferred_locale": "en",
}
# Enough for a Settings to validate where no fake runs yet (test collection).
_PLACEHOLDERS: dict[str, Any] = {
    "ctp_project_key": "p", "ctp_client_id": "c", "ctp_client_secret": "s",
    "ctp_api_url": "http://127.0.0.1:9", "ctp_auth_url": "http://127.0.0.1:9",
    "klaviyo_api_key": "pk_test",
}


def contract_processor_names() -> list[str]:
    """Every processor's name, read where the suites are collected (nothing runs then)."""
    return [p.name for p in all_processors(load_settings(**_PLACEHOLDERS, **CONTRACT_SETTINGS))]


def cloud_event_data(delivery: dict[str, Any] | bytes) -> dict[str, Any]:
    """What Pub/Sub's CloudEvent carries for a commercetools delivery (`cloud_event.get_data()`)."""
    raw = delivery if isinstance(delivery, bytes) else json.dumps(delivery).encode()
    return {"message": {"data": base64.b64encode(raw).decode(), "messageId": "pubsub-1"}}


@dataclass(frozen=True)
class Delivered:
    outcome: Outcome
    acknowledged: bool


@dataclass
class Seam:
    ct: FakeCommercetools
    klaviyo: FakeKlaviyo
    settings: Settings
    context: Context
    processors: list[Processor]

    def processor(self, name: str) -> Processor:
        (found,) = [p for p in self.processors if p.name == name]
        return found

    def deliver(self, delivery: dict[str, Any] | bytes,
                processors: Sequence[Processor] | None = None) -> Delivered:
        chosen = self.processors if processors is None else processors
        try:
            return Delivered(dispatch(cloud_event_data(delivery), chosen, self.context), True)
        except RedeliveryRequested as exc:
            assert exc.outcome is not None
            return Delivered(exc.outcome, False)


def make_seam(ct: FakeCommercetools, klaviyo: FakeKlaviyo, ct_client: CommercetoolsClient,
              klaviyo_client: KlaviyoClient, **settings: Any) -> Seam:
    loaded = load_settings(
        ctp_project_key=ct.project_key, ctp_client_id=ct.client_id,
        ctp_client_secret=ct.client_secret, ctp_scopes=" ".join(ct.scopes),
        ctp_api_url=ct.url, ctp_auth_url=ct.auth_url,
        klaviyo_api_key=klaviyo.api_key, klaviyo_base_url=klaviyo.url,
        **{**CONTRACT_SETTINGS, **settings},
    )
    context = Context(loaded, klaviyo_client, ct_client, Deadline.after(20))
    return Seam(ct, klaviyo, loaded, context, all_processors(loaded))


def klaviyo_writes(klaviyo: FakeKlaviyo, since: int = 0) -> list[tuple[str, str]]:
    """The requests that could change Klaviyo's data (everything but reads)."""
    return [(r.method, r.path) for r in list(klaviyo.requests)[since:] if r.method != "GET"]


def klaviyo_state(klaviyo: FakeKlaviyo) -> dict[str, Any]:
    """What Klaviyo holds, without the timestamps Klaviyo sets on every write."""
    return _without_stamps({
        "profiles": klaviyo.profiles, "events": klaviyo.events, "items": klaviyo.items,
        "variants": klaviyo.variants, "categories": klaviyo.categories,
        "consents": klaviyo.consents,
        "list_members": {k: sorted(v) for k, v in klaviyo.list_members.items()},
    })


def _without_stamps(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_stamps(v) for k, v in value.items() if k not in ("created", "updated")}
    if isinstance(value, list):
        return [_without_stamps(v) for v in value]
    return value
