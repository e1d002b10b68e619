"""The commercetools subscription the enabled processors need, and how an existing one differs.

Pure: no I/O. What is needed is read from the processors' triggers (`shared.processors`),
grouped by resource type, never from a list kept here; `update_actions` says what turns an
existing subscription into it, `report` says the same for an operator. The commands are
`deploy.subscriptions`, the HTTP calls `deploy.subscription_api`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ConfigError
from shared.processors import Processor

PLATFORM_FORMAT = {"type": "Platform"}
CHANGE_TYPES = frozenset({"ResourceCreated", "ResourceUpdated", "ResourceDeleted"})

Json = dict[str, Any]


# ---- what is needed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Needed:
    """The subscription the enabled processors need (normalised: sorted, no duplicates)."""

    destination: Json
    messages: dict[str, tuple[str, ...]]  # resourceTypeId -> message types
    changes: tuple[str, ...]  # resourceTypeIds with change notifications
    # per resource, the change types the processors handle (commercetools delivers all three)
    change_types: dict[str, tuple[str, ...]] = field(default_factory=dict)
    format: Json = field(default_factory=lambda: dict(PLATFORM_FORMAT))

    def messages_json(self) -> list[Json]:
        return [{"resourceTypeId": r, "types": list(t)} for r, t in self.messages.items()]

    def changes_json(self) -> list[Json]:
        return [{"resourceTypeId": r} for r in self.changes]

    def draft(self, key: str) -> Json:
        return {
            "key": key,
            "destination": self.destination,
            "messages": self.messages_json(),
            "changes": self.changes_json(),
            "format": self.format,
        }


def destination(project_id: str, topic: str) -> Json:
    topic = topic.rsplit("/", 1)[-1]  # accept projects/<p>/topics/<id> as well as the id
    return {"type": "GoogleCloudPubSub", "projectId": project_id, "topic": topic}


def needed_subscription(processors: Iterable[Processor], *, project_id: str, topic: str) -> Needed:
    messages: dict[str, set[str]] = {}
    change_types: dict[str, set[str]] = {}
    for processor in processors:
        trigger = processor.trigger
        if trigger.messages:
            messages.setdefault(trigger.resource, set()).update(trigger.messages)
        if trigger.changes:
            unknown = set(trigger.changes) - CHANGE_TYPES
            if unknown:
                raise ValueError(f"processor {processor.name}: "
                                 f"unknown change types {sorted(unknown)}")
            change_types.setdefault(trigger.resource, set()).update(trigger.changes)
    if not messages and not change_types:
        raise ConfigError("no processor is enabled: there is nothing to subscribe to")
    return Needed(
        destination=destination(project_id, topic),
        messages={r: tuple(sorted(t)) for r, t in sorted(messages.items())},
        changes=tuple(sorted(change_types)),
        change_types={r: tuple(sorted(t)) for r, t in sorted(change_types.items())},
    )


# ---- comparing with what exists ---------------------------------------------------------------


def existing_messages(subscription: Json) -> dict[str, tuple[str, ...] | None]:
    """resourceTypeId -> types; None means *all* messages of that resource (no `types`)."""
    result: dict[str, tuple[str, ...] | None] = {}
    for item in subscription.get("messages") or []:
        types = item.get("types")
        result[item["resourceTypeId"]] = tuple(sorted(set(types))) if types else None
    return dict(sorted(result.items()))


def existing_changes(subscription: Json) -> tuple[str, ...]:
    return tuple(sorted({c["resourceTypeId"] for c in subscription.get("changes") or []}))


def _same_destination(existing: Json | None, needed: Json) -> bool:
    existing = existing or {}
    return all(existing.get(k) == v for k, v in needed.items())


def same_format(existing: Json | None, needed: Json) -> bool:
    return (existing or PLATFORM_FORMAT).get("type") == needed["type"]


def update_actions(subscription: Json, needed: Needed) -> list[Json]:
    """The update actions that turn `subscription` into `needed` (format aside)."""
    actions: list[Json] = []
    if existing_messages(subscription) != needed.messages:
        actions.append({"action": "setMessages", "messages": needed.messages_json()})
    if existing_changes(subscription) != needed.changes:
        actions.append({"action": "setChanges", "changes": needed.changes_json()})
    if not _same_destination(subscription.get("destination"), needed.destination):
        actions.append({"action": "changeDestination", "destination": needed.destination})
    return actions


def in_sync(subscription: Json | None, needed: Needed) -> bool:
    return (
        subscription is not None
        and not update_actions(subscription, needed)
        and same_format(subscription.get("format"), needed.format)
    )


def describe_destination(dest: Json | None) -> str:
    if not dest:
        return "(none)"
    if dest.get("type") == "GoogleCloudPubSub":
        return f"GoogleCloudPubSub projects/{dest.get('projectId')}/topics/{dest.get('topic')}"
    return str(dest.get("type"))  # other destinations may carry credentials: type only


def report(key: str, project_key: str, subscription: Json | None, needed: Needed) -> list[str]:
    """Human-readable comparison of what exists with what is needed."""
    lines = [f"commercetools subscription {key!r} in project {project_key!r}"]
    if subscription is None:
        lines.append("  exists:      no")
    else:
        lines.append(f"  exists:      yes (version {subscription.get('version')}, "
                     f"status {subscription.get('status', 'unknown')})")

    def row(label: str, have: str, want: str) -> None:
        if subscription is None or have == want:
            lines.append(f"  {label:<12} {want}" + ("" if subscription is None else "  [ok]"))
        else:
            lines.append(f"  {label:<12} {want}  [differs: has {have}]")

    have_dest = describe_destination(subscription.get("destination")) if subscription else ""
    row("destination:", have_dest, describe_destination(needed.destination))
    have_format = ((subscription or {}).get("format") or PLATFORM_FORMAT).get("type", "?")
    row("format:", have_format, needed.format["type"])

    have_messages = existing_messages(subscription) if subscription else {}
    lines.append("  messages:")
    for resource in sorted(set(have_messages) | set(needed.messages)):
        want = set(needed.messages.get(resource, ()))
        have = have_messages.get(resource, ())
        if subscription is None:
            lines.append(f"    {resource}: {', '.join(sorted(want))}")
            continue
        if have is None:
            lines.append(f"    {resource}: {', '.join(sorted(want)) or '-'}  "
                         "[differs: has all messages of this resource]")
            continue
        added, removed = sorted(want - set(have)), sorted(set(have) - want)
        status = "[ok]" if not added and not removed else "[differs: " + "; ".join(
            part for part in (f"missing {', '.join(added)}" if added else "",
                              f"extra {', '.join(removed)}" if removed else "") if part) + "]"
        lines.append(f"    {resource}: {', '.join(sorted(want)) or '-'}  {status}")

    have_changes = set(existing_changes(subscription)) if subscription else set()
    lines.append("  changes:")
    for resource in sorted(have_changes | set(needed.changes)):
        handled = ", ".join(needed.change_types.get(resource, ())) or "-"
        if subscription is None:
            status = ""
        elif resource in needed.changes and resource in have_changes:
            status = "  [ok]"
        elif resource in needed.changes:
            status = "  [differs: missing]"
        else:
            status = "  [differs: extra]"
        lines.append(f"    {resource} (handled: {handled}){status}")
    if subscription is None:
        lines.append("=> missing: `create` creates it")
    elif in_sync(subscription, needed):
        lines.append("=> up to date")
    elif not same_format(subscription.get("format"), needed.format):
        lines.append("=> differs, and the format cannot be updated: "
                     "`create --recreate` replaces it")
    else:
        lines.append("=> differs: `create` updates it in place")
    return lines
