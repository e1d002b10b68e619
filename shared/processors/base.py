"""What a realtime processor is — a trigger (which deliveries) and a handler (which Klaviyo
writes) — and the one read every processor's handler starts with (`read_current`).

Processors are plain data so the router, the `disabledProcessors` switch and the commercetools
subscription setup all read the same triggers instead of keeping lists of their own. A
processor's mapping configuration is built once, by its module's `processors(settings)`, and
bound into its handler; a handler gets the message and the `Context` (the clients and the
delivery's deadline) and returns the number of Klaviyo writes it made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from pydantic import BaseModel

from shared.commercetools.messages import CtMessage
from shared.config import Settings
from shared.deadline import Deadline
from shared.log import get_logger

if TYPE_CHECKING:
    # The clients import `requests` and the commercetools SDK (its OAuth session); a module that
    # only needs their types should not pay that import at start-up.
    from shared.commercetools.client import CommercetoolsClient
    from shared.klaviyo.client import KlaviyoClient

log = get_logger(__name__)


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
    """What one delivery's handlers share: the settings, both clients, the delivery's deadline."""

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


# ---- reading the resource a delivery is about ------------------------------------------------

Resource = Literal["customers", "orders", "payments", "products", "categories", "inventory",
                   "carts"]
# How a resource is named in the "no longer exists" line, and its id's log field.
_NAMES: Final[dict[Resource, tuple[str, str]]] = {
    "customers": ("customer", "ctCustomerId"),
    "orders": ("order", "ctOrderId"),
    "payments": ("payment", "ctPaymentId"),
    "products": ("product", "ctProductId"),
    "categories": ("category", "ctCategoryId"),
    "inventory": ("inventory entry", "ctInventoryEntryId"),
    "carts": ("cart", "ctCartId"),
}
GONE_MESSAGE: Final = "{} no longer exists; skipped"

Model = TypeVar("Model", bound=BaseModel)


def read_current(
    ctx: Context, resource: Resource, id: str, model: type[Model], *,
    expand: Sequence[str] = (), **log_fields: Any,
) -> Model | None:
    """The resource as commercetools holds it *now*, validated as `model`; None when it is gone.

    Deliveries are at-least-once, unordered and may omit the payload, so a handler never trusts
    the message body for state: it reads the resource by id. See `validated` for what a missing
    or invalid document becomes.
    """
    document = ctx.ct.get_by_id(resource, id, expand=expand, deadline=ctx.deadline)
    return validated(resource, id, document, model, **log_fields)


def validated(
    resource: Resource, id: str, document: dict[str, Any] | None, model: type[Model],
    **log_fields: Any,
) -> Model | None:
    """`document` (read by id, or found in a query or an expansion) validated as `model`.

    None, logged as "<resource> no longer exists; skipped" with ids only (`log_fields` adds
    other ids, never customer data), when there is no document: it was deleted meanwhile, and
    the delivery is acknowledged with nothing written. A document that does not validate raises
    pydantic's ValidationError, which `dispatch` logs (field names only) and acknowledges: it is
    a definite statement about this record, and a redelivery would read the same document.
    """
    if document is None:
        label, id_field = _NAMES[resource]
        log.info(GONE_MESSAGE.format(label), **{id_field: id}, **log_fields)
        return None
    return model.model_validate(document)
