"""Inspect and replay commercetools deliveries that the realtime function dead-lettered.

    python -m deploy.deadletters list   [--subscription SUB] [--project GCP_PROJECT] [--max N]
    python -m deploy.deadletters replay (--all | --ids ID [ID ...]) [--drop-failed] [...]

After MAX_DELIVERY_ATTEMPTS failed deliveries Pub/Sub moves a message from the realtime trigger's
subscription to the dead-letter topic; deploy.sh gives that topic a pull subscription
(`<prefix>-ct-messages-dead-letter`, kept 7 days) that this command reads.

`list` pulls without acknowledging (the messages stay) and prints, per message, the Pub/Sub message
id, the commercetools resource type and id, the message type, the CT message id, how many delivery
attempts failed and when it was first published. Never the payload: it can hold customer data.
Pub/Sub keeps no failure reason; the realtime function logged it, with `ctMessageId` as shown here.

`replay` runs the selected messages (`--all`, or `--ids` matching the Pub/Sub message id or the CT
message id) through the realtime path in this process (`shared.processors.dispatch` with clients
built from the settings, exactly as `realtime/main.py` does) and acknowledges only the ones that
went through: processed, or ignored because no enabled processor wants them. A retryable failure
leaves the message in the subscription; so does a terminal failure (a processor refused it, or it
is not a commercetools delivery) unless `--drop-failed` is given. Messages not selected are
released untouched.

Settings come from the environment or `.env`, as for the functions (`replay` needs the CTP_* and
KLAVIYO_* ones; `list` only the project). Both honour PUBSUB_EMULATOR_HOST.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from deploy.operator import one_line_errors

DEFAULT_SUBSCRIPTION = "ct-klaviyo-ct-messages-dead-letter"
LEASE_SECONDS = 600  # Pub/Sub's maximum ack deadline
RELEASE_AFTER_SECONDS = 240  # renew held leases when the last renewal is older than this
SOURCE_DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
SOURCE_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"


@dataclass(frozen=True)
class DeadLetter:
    """One pulled message: what can be shown about it, and its ack id."""

    ack_id: str
    message_id: str
    publish_time: str
    attempts: str
    source: str
    resource_type: str
    resource_id: str
    message_type: str
    ct_message_id: str
    data: bytes
    attributes: dict[str, str]

    def row(self) -> list[str]:
        return [self.message_id, self.resource_type, self.resource_id, self.message_type,
                self.ct_message_id, self.attempts, self.publish_time]

    def event_data(self, subscription: str) -> dict[str, Any]:
        """The CloudEvent data the realtime function would have received for this message."""
        return {
            "message": {
                "data": base64.b64encode(self.data).decode(),
                "attributes": dict(self.attributes),
                "messageId": self.message_id,
                "publishTime": self.publish_time,
            },
            "subscription": subscription,
        }


HEADER = ["PUBSUB MESSAGE ID", "RESOURCE", "RESOURCE ID", "MESSAGE TYPE", "CT MESSAGE ID",
          "ATTEMPTS", "PUBLISHED"]


def _timestamp(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return str(value)


def describe(received: Any) -> DeadLetter:
    """A pulled `ReceivedMessage` → DeadLetter; reads only ids and types from the payload."""
    from shared.commercetools.messages import parse_ct_message
    from shared.errors import MessageError

    message = received.message
    attributes = dict(message.attributes)
    attempts = attributes.get(SOURCE_DELIVERY_COUNT) or (
        str(received.delivery_attempt) if received.delivery_attempt else "-")
    resource_type = resource_id = message_type = ct_id = "-"
    try:
        ct = parse_ct_message(json.loads(message.data))
    except (ValueError, MessageError):
        message_type = "(not a commercetools delivery)"
    else:
        resource_type, resource_id = ct.resource.type_id, ct.resource.id
        message_type, ct_id = ct.message_type, ct.log_id
    return DeadLetter(
        ack_id=received.ack_id,
        message_id=message.message_id,
        publish_time=_timestamp(message.publish_time),
        attempts=attempts,
        source=attributes.get(SOURCE_SUBSCRIPTION, "-"),
        resource_type=resource_type,
        resource_id=resource_id,
        message_type=message_type,
        ct_message_id=ct_id,
        data=bytes(message.data),
        attributes=attributes,
    )


class Puller:
    """Pulls every message of a subscription and holds their leases until released."""

    def __init__(self, subscriber: Any, subscription: str, *, wait: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.subscriber = subscriber
        self.subscription = subscription
        self.wait = wait  # how long one pull waits for messages (the last, empty one always does)
        self._clock = clock
        self._held: dict[str, str] = {}  # ack_id -> message id
        self._renewed = clock()

    def pull_all(self, limit: int) -> list[DeadLetter]:
        from google.api_core import exceptions

        seen: dict[str, DeadLetter] = {}
        while len(seen) < limit:
            try:
                response = self.subscriber.pull(
                    subscription=self.subscription, max_messages=min(100, limit - len(seen)),
                    timeout=self.wait)
            except exceptions.DeadlineExceeded:
                break
            if not response.received_messages:
                break
            fresh = 0
            for received in response.received_messages:
                if received.message.message_id in seen:  # redelivered while we hold another lease
                    self._modify([received.ack_id], 0)
                    continue
                letter = describe(received)
                seen[letter.message_id] = letter
                self._held[letter.ack_id] = letter.message_id
                fresh += 1
            self._modify([r.ack_id for r in response.received_messages
                          if r.ack_id in self._held], LEASE_SECONDS)
            self._renewed = self._clock()
            if not fresh:
                break
        return sorted(seen.values(), key=lambda d: (d.publish_time, d.message_id))

    def renew_if_due(self) -> None:
        if self._held and self._clock() - self._renewed > RELEASE_AFTER_SECONDS:
            self._modify(list(self._held), LEASE_SECONDS)
            self._renewed = self._clock()

    def ack(self, letter: DeadLetter) -> None:
        self.subscriber.acknowledge(subscription=self.subscription, ack_ids=[letter.ack_id])
        self._held.pop(letter.ack_id, None)

    def release(self, letters: Sequence[DeadLetter] | None = None) -> None:
        """Make messages available again at once (all held ones by default)."""
        ack_ids = list(self._held) if letters is None else [
            d.ack_id for d in letters if d.ack_id in self._held]
        if ack_ids:
            self._modify(ack_ids, 0)
        for ack_id in ack_ids:
            self._held.pop(ack_id, None)

    def _modify(self, ack_ids: list[str], seconds: int) -> None:
        for start in range(0, len(ack_ids), 1000):
            self.subscriber.modify_ack_deadline(
                subscription=self.subscription, ack_ids=ack_ids[start:start + 1000],
                ack_deadline_seconds=seconds)


def print_table(rows: list[list[str]], out: Any = None) -> None:
    out = out or sys.stdout
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = (cell.ljust(w) for cell, w in zip(r, widths, strict=True))
        print("  ".join(cells).rstrip(), file=out)


# ---- replay -----------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    acked: list[tuple[DeadLetter, str]]
    kept: list[tuple[DeadLetter, str]]


def replay(puller: Puller, letters: Sequence[DeadLetter], run: Callable[[dict[str, Any]], Any], *,
           drop_failed: bool = False) -> ReplayResult:
    """Run each letter through `run` (the realtime dispatch); ack only what went through."""
    from shared.errors import ConnectorError

    result = ReplayResult([], [])
    for letter in letters:
        puller.renew_if_due()
        try:
            outcome = run(letter.event_data(puller.subscription))
        except ConnectorError as exc:
            kind = "retryable" if exc.retryable else "terminal"
            result.kept.append((letter, f"{kind} failure ({type(exc).__name__})"))
            continue
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the message
            result.kept.append((letter, f"error ({type(exc).__name__})"))
            continue
        status = getattr(outcome, "status", "processed")
        if status in ("processed", "ignored") or drop_failed:
            puller.ack(letter)
            result.acked.append((letter, status))
        else:
            result.kept.append((letter, f"{status}: terminal failure, see the logs"))
    return result


def realtime_runner() -> Callable[[dict[str, Any]], Any]:
    """The realtime function's path, with clients built from the settings like realtime/main.py."""
    from shared import log
    from shared.commercetools.client import CommercetoolsClient
    from shared.config import get_settings
    from shared.deadline import Deadline
    from shared.klaviyo.client import KlaviyoClient
    from shared.processors import Context, enabled_processors
    from shared.processors.dispatch import dispatch

    settings = get_settings()
    log.configure(settings.log_level)
    processors = enabled_processors(settings)
    klaviyo = KlaviyoClient.from_settings(settings)
    commercetools = CommercetoolsClient.from_settings(settings)

    def run(event_data: dict[str, Any]) -> Any:
        deadline = Deadline.after(settings.realtime_deadline_seconds)
        return dispatch(event_data, processors, Context(settings, klaviyo, commercetools, deadline))

    return run


# ---- CLI --------------------------------------------------------------------------------------


def _project(arg: str | None) -> str:
    project = arg or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        try:  # `.env`, like the functions
            from shared.config import get_settings

            project = get_settings().google_cloud_project
        except Exception:  # noqa: BLE001 - reported below as the missing project
            project = None
    if not project:
        raise SystemExit("error: --project or GOOGLE_CLOUD_PROJECT is required")
    return project


@one_line_errors
def main(argv: Sequence[str] | None = None,
         runner: Callable[[], Callable[[dict[str, Any]], Any]] = realtime_runner) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.deadletters",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--subscription",
                        default=os.environ.get("CT_DEAD_LETTER_SUBSCRIPTION", DEFAULT_SUBSCRIPTION),
                        help="dead-letter pull subscription id or path "
                             f"(default {DEFAULT_SUBSCRIPTION})")
    common.add_argument("--project", help="Google Cloud project (default GOOGLE_CLOUD_PROJECT)")
    common.add_argument("--max", type=int, default=1000, help="at most this many messages (1000)")
    common.add_argument("--wait", type=float, default=5.0,
                        help="seconds a pull waits for messages (5); raise it if some are missed")
    sub.add_parser("list", parents=[common], help="list dead letters (ids and types, no payload)")
    replay_parser = sub.add_parser("replay", parents=[common], help="replay into the realtime path")
    which = replay_parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every message in the subscription")
    which.add_argument("--ids", nargs="+", metavar="ID",
                       help="Pub/Sub message ids or commercetools message ids")
    replay_parser.add_argument("--drop-failed", action="store_true",
                               help="also acknowledge messages that fail terminally")
    args = parser.parse_args(argv)

    from google.cloud.pubsub_v1 import SubscriberClient

    subscriber = SubscriberClient()
    path = args.subscription if args.subscription.startswith("projects/") else \
        subscriber.subscription_path(_project(args.project), args.subscription)
    puller = Puller(subscriber, path, wait=args.wait)
    try:
        letters = puller.pull_all(args.max)
        if args.command == "list":
            if not letters:
                print(f"no dead letters in {path}")
                return 0
            print_table([HEADER] + [d.row() for d in letters])
            print(f"\n{len(letters)} message(s) in {path}. The failure reasons are in the realtime "
                  "function's logs (search jsonPayload.ctMessageId).")
            return 0

        wanted = set(args.ids or ())
        selected = [d for d in letters if args.all or d.message_id in wanted
                    or d.ct_message_id in wanted]
        missing = sorted(wanted - {d.message_id for d in selected}
                         - {d.ct_message_id for d in selected})
        chosen = {d.message_id for d in selected}
        puller.release([d for d in letters if d.message_id not in chosen])
        for id_ in missing:
            print(f"not found: {id_}", file=sys.stderr)
        if not selected:
            print("nothing to replay")
            return 1 if missing else 0
        result = replay(puller, selected, runner(), drop_failed=args.drop_failed)
        for letter, status in result.acked:
            print(f"acknowledged  {letter.message_id}  {letter.message_type}  "
                  f"{letter.resource_type} {letter.resource_id}  ({status})")
        for letter, reason in result.kept:
            print(f"kept          {letter.message_id}  {letter.message_type}  "
                  f"{letter.resource_type} {letter.resource_id}  ({reason})")
        print(f"\nreplayed {len(selected)}: {len(result.acked)} acknowledged, "
              f"{len(result.kept)} left in {path}")
        return 0 if not result.kept and not missing else 1
    finally:
        puller.release()


if __name__ == "__main__":
    sys.exit(main())
