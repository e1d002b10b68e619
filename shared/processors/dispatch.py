"""One Pub/Sub delivery → decode → the processors it triggers → outcome.

Returning normally acknowledges the message; raising makes Pub/Sub redeliver it. So: malformed
input and definite 4xx are logged and acknowledged, retryable failures are raised once every
matching processor has had its turn (each Klaviyo write is idempotent, so redelivery is safe).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.commercetools.messages import CtMessage, parse_ct_message
from shared.errors import ApiError, ConnectorError, MessageError, RetryableError
from shared.log import get_logger
from shared.processors.base import Context, Processor
from shared.pubsub import decode_pubsub_event

log = get_logger(__name__)


class RedeliveryRequested(RetryableError):
    """Raised to fail the invocation so Pub/Sub redelivers the message."""


@dataclass(frozen=True)
class Outcome:
    status: str  # processed | ignored | malformed | failed
    writes: int = 0
    processors: tuple[str, ...] = ()


def decode(event_data: Any) -> CtMessage:
    return parse_ct_message(decode_pubsub_event(event_data).json())


def _message_fields(message: CtMessage) -> dict[str, Any]:
    return {
        "ctMessageId": message.log_id,
        "resource": message.resource.type_id,
        "resourceId": message.resource.id,
        "messageType": message.message_type,
    }


def dispatch(event_data: Any, processors: Sequence[Processor], context: Context) -> Outcome:
    try:
        message = decode(event_data)
    except MessageError as exc:
        log.warning("malformed message acknowledged", reason=str(exc))
        return Outcome("malformed")
    fields = _message_fields(message)
    if message.is_subscription_test:
        log.info("subscription test message acknowledged", **fields)
        return Outcome("ignored")
    matched = [p for p in processors if p.trigger.matches(message)]
    if not matched:
        log.info("no processor for message; acknowledged", **fields)
        return Outcome("ignored")

    writes, failures, retryable = 0, 0, []
    for processor in matched:
        try:
            count = processor.handle(message, context)
        except ValidationError as exc:
            failures += 1
            bad = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
            log.error(
                "resource failed validation; acknowledged",
                processor=processor.name, invalidFields=bad[:20], **fields,
            )
        except ConnectorError as exc:
            details = exc.log_fields() if isinstance(exc, ApiError) else {}
            if exc.retryable:
                retryable.append(processor.name)
                log.warning(
                    "retryable failure; message will be redelivered",
                    processor=processor.name, error=type(exc).__name__, **details, **fields,
                )
            else:
                failures += 1
                log.error(
                    "terminal failure; acknowledged",
                    processor=processor.name, error=type(exc).__name__, **details, **fields,
                )
        else:
            writes += count
            log.info("processed", processor=processor.name, klaviyoWrites=count, **fields)
    names = tuple(p.name for p in matched)
    if retryable:
        raise RedeliveryRequested(f"retryable failure in {', '.join(retryable)}")
    return Outcome("failed" if failures else "processed", writes, names)
