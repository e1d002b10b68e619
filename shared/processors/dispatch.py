"""One Pub/Sub delivery → decode → the processors it triggers → outcome.

Returning normally acknowledges the message; raising makes Pub/Sub redeliver it. So: malformed
input and definite statements about the record (a resource that fails validation, an answer in
`shared.errors.TERMINAL_STATUSES`) are logged and acknowledged; retryable failures, refused
credentials and unexpected exceptions are raised once every matching processor has had its turn
(each Klaviyo write is idempotent, so redelivery is safe), so the message is redelivered and
finally dead-lettered, never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from shared.commercetools.messages import CtMessage, parse_ct_message
from shared.errors import ApiError, ConnectorError, MessageError, RetryableError, auth_failure_of
from shared.log import get_logger
from shared.processors.base import Context, Processor
from shared.pubsub import decode_pubsub_event

log = get_logger(__name__)


# What became of a delivery. Acknowledged: processed (every matching processor ran without an
# error; 0 writes is fine, e.g. the resource was gone), ignored (a subscription test message, or
# no processor for it), malformed (not a commercetools delivery), failed (one or more processors
# hit a definite statement about the record: invalid, or refused by Klaviyo; the others' writes
# stand). Not acknowledged: redeliver (carried by RedeliveryRequested, never returned).
OutcomeStatus = Literal["processed", "ignored", "malformed", "failed", "redeliver"]


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    writes: int = 0
    processors: tuple[str, ...] = ()
    redeliver: tuple[str, ...] = ()  # processors whose failure asks for a redelivery


class RedeliveryRequested(RetryableError):
    """Raised to fail the invocation so Pub/Sub redelivers the message."""

    def __init__(self, message: str, *, outcome: Outcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


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

    writes, acknowledged_failure, redeliver = 0, False, []
    refused: set[str] = set()  # settings already named in an ERROR line for this delivery
    for processor in matched:
        try:
            count = processor.handle(message, context)
        except ValidationError as exc:
            acknowledged_failure = True
            bad = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
            log.error(
                "resource failed validation; acknowledged",
                processor=processor.name, invalidFields=bad[:20], **fields,
            )
        except ConnectorError as exc:
            details = exc.log_fields() if isinstance(exc, ApiError) else {}
            auth = auth_failure_of(exc)
            if auth is not None:
                redeliver.append(processor.name)
                if auth.fix_variables not in refused:
                    refused.add(auth.fix_variables)
                    log.error(
                        f"credentials refused: fix {auth.fix_variables}; "
                        "message will be redelivered",
                        processor=processor.name, error=type(auth).__name__,
                        fixVariables=auth.fix_variables, **auth.log_fields(), **fields,
                    )
            elif exc.retryable:
                redeliver.append(processor.name)
                log.warning(
                    "retryable failure; message will be redelivered",
                    processor=processor.name, error=type(exc).__name__, **details, **fields,
                )
            else:
                acknowledged_failure = True
                log.error(
                    "terminal failure; acknowledged",
                    processor=processor.name, error=type(exc).__name__, **details, **fields,
                )
        except Exception as exc:  # noqa: BLE001 - a bug or unexpected data in one processor
            # The other processors still run; the message goes back (and finally to the
            # dead-letter topic) instead of being acknowledged with this processor's work lost.
            # Only the type is logged: an exception's text can echo customer data.
            redeliver.append(processor.name)
            log.error(
                "unexpected failure; message will be redelivered",
                processor=processor.name, error=type(exc).__name__, **fields,
            )
        else:
            writes += count
            log.info("processed", processor=processor.name, klaviyoWrites=count, **fields)
    names = tuple(p.name for p in matched)
    if redeliver:
        raise RedeliveryRequested(
            f"redelivery requested by {', '.join(redeliver)}",
            outcome=Outcome("redeliver", writes, names, tuple(redeliver)),
        )
    return Outcome("failed" if acknowledged_failure else "processed", writes, names)
