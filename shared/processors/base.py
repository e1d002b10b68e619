"""What a realtime processor is: a trigger (which deliveries) and a handler (which Klaviyo writes).

Processors are plain data so the router, the `disabledProcessors` switch and the commercetools
subscription setup all read the same triggers instead of keeping lists of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.commercetools.messages import CtMessage
from shared.config import Settings
from shared.deadline import Deadline

if TYPE_CHECKING:  # the clients import requests/the CT SDK; type checking needs no import cost
    from shared.commercetools.client import CommercetoolsClient
    from shared.klaviyo.client import KlaviyoClient


@dataclass(frozen=True)
class Trigger:
    """Which deliveries a processor handles: Message types and/or change notifications."""

    resource: str  # commercetools resource typeId, e.g. "customer"
    messages: frozenset[str] = frozenset()
    changes: frozenset[str] = frozenset()  # ResourceCreated / ResourceUpdated / ResourceDeleted

    def matches(self, message: CtMessage) -> bool:
        if message.resource.type_id != self.resource:
            return False
        if message.notification_type == "Message":
            return message.message_type in self.messages
        return message.notification_type in self.changes


@dataclass(frozen=True)
class Context:
    settings: Settings
    klaviyo: KlaviyoClient
    ct: CommercetoolsClient
    deadline: Deadline


Handler = Callable[[CtMessage, Context], int]  # returns the number of Klaviyo writes made


@dataclass(frozen=True)
class Processor:
    name: str  # the documented name used in DISABLED_PROCESSORS
    trigger: Trigger
    handle: Handler
