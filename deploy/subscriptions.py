"""The commercetools subscription that feeds the realtime function.

    python -m deploy.subscriptions show   [--key KEY] [--project GCP_PROJECT] [--topic TOPIC]
    python -m deploy.subscriptions create [--key KEY] [--project GCP_PROJECT] [--topic TOPIC]
                                          [--recreate]
    python -m deploy.subscriptions delete [--key KEY]

The subscription delivers, in the Platform format, to the Google Pub/Sub topic the realtime
function is triggered by, exactly the Message types and change notifications that the *enabled*
processors react to: they are read from the processors' triggers (`shared.processors`), grouped by
resource type, never from a list kept here. So the settings that decide which processors run
(DISABLED_PROCESSORS, ORDER_CREATED_MESSAGES, ...) must be the ones the functions are deployed with.

`create` is idempotent: an existing subscription with the same key is updated in place (setMessages,
setChanges, changeDestination with its version) when it differs, and left alone when it does not.
commercetools has no update action for the payload format, so a subscription in another format is
only replaced with `--recreate`. `show` prints what exists next to what is needed and exits 1 when
they differ (or the subscription is missing). `delete` removes it.

commercetools credentials come from the same CTP_* variables (or `.env`) as the functions; the API
client needs the `manage_subscriptions:<project key>` scope (or manage_project). `--scopes`
overrides CTP_SCOPES for this command, e.g. when the functions' own client is read-only.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from shared.commercetools.auth import CommercetoolsSession
from shared.commercetools.client import USER_AGENT
from shared.config import Settings, load_settings
from shared.deadline import Deadline
from shared.errors import CommercetoolsError, ConfigError, ConnectorError
from shared.http import HttpFailure, InvalidRequest, parse_json, retry_after_seconds
from shared.processors import Processor, enabled_processors
from shared.retry import call_with_retry

DEFAULT_KEY = "klaviyo-connector"
DEFAULT_TOPIC = "ct-klaviyo-ct-messages"
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


def _same_format(existing: Json | None, needed: Json) -> bool:
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
        and _same_format(subscription.get("format"), needed.format)
    )


def _fmt_destination(dest: Json | None) -> str:
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

    have_dest = _fmt_destination(subscription.get("destination")) if subscription else ""
    row("destination:", have_dest, _fmt_destination(needed.destination))
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
    elif not _same_format(subscription.get("format"), needed.format):
        lines.append("=> differs, and the format cannot be updated: "
                     "`create --recreate` replaces it")
    else:
        lines.append("=> differs: `create` updates it in place")
    return lines


# ---- the commercetools Subscriptions API ------------------------------------------------------


class SubscriptionApi:
    """GET/POST/DELETE /{projectKey}/subscriptions[/key=<key>] on the connector's CT session.

    The connector's CommercetoolsClient is read-only by design; this shares its auth and HTTP
    layer (no hidden retries) and the shared retry policy.
    """

    def __init__(self, session: CommercetoolsSession, api_url: str, project_key: str,
                 *, timeout: tuple[float, float] = (5.0, 30.0),
                 deadline_seconds: float = 60.0) -> None:
        self._session = session
        self._base_url = api_url.rstrip("/")
        self.project_key = project_key
        self._timeout = timeout
        self._deadline_seconds = deadline_seconds

    @classmethod
    def from_settings(
        cls, settings: Settings, *, scopes: Sequence[str] | None = None
    ) -> SubscriptionApi:
        session = CommercetoolsSession(
            api_url=settings.ctp_api_url,
            auth_url=settings.ctp_auth_url,
            client_id=settings.ctp_client_id,
            client_secret=settings.ctp_client_secret.get_secret_value(),
            scopes=list(scopes or settings.ct_scopes),
            user_agent=USER_AGENT,
        )
        return cls(session, settings.ctp_api_url, settings.ctp_project_key)

    def _path(self, key: str | None = None) -> str:
        base = f"/{self.project_key}/subscriptions"
        return base if key is None else f"{base}/key={urllib.parse.quote(key, safe='')}"

    def get(self, key: str) -> Json | None:
        return self._call("GET", self._path(key), none_on_404=True)

    def create(self, draft: Json) -> Json:
        return self._call("POST", self._path(), body=draft)

    def update(self, key: str, version: int, actions: list[Json]) -> Json:
        return self._call("POST", self._path(key), body={"version": version, "actions": actions})

    def delete(self, key: str, version: int) -> Json:
        return self._call("DELETE", self._path(key), params={"version": str(version)})

    def _call(self, method: str, path: str, *, body: Json | None = None,
              params: dict[str, str] | None = None, none_on_404: bool = False) -> Any:
        deadline = Deadline.after(self._deadline_seconds)
        # Only reads are retried: a POST that timed out may have been applied (a retried create
        # would then fail with DuplicateField, a retried update with ConcurrentModification).
        attempts = 4 if method == "GET" else 1
        return call_with_retry(lambda: self._once(method, path, body, params, none_on_404),
                               deadline=deadline, max_attempts=attempts, base=0.5, cap=4.0)

    def _once(self, method: str, path: str, body: Json | None, params: dict[str, str] | None,
              none_on_404: bool) -> Any:
        url = self._base_url + path
        try:
            response = self._session.request(method, url, params=params, json=body,
                                             headers={"Accept": "application/json"},
                                             timeout=self._timeout)
        except (HttpFailure, InvalidRequest) as exc:
            raise CommercetoolsError(f"commercetools subscriptions: {exc}", status=None,
                                     retryable=isinstance(exc, HttpFailure)) from exc
        if response.status_code == 404 and none_on_404:
            return None
        if response.status_code >= 400:
            raise _error(response)
        return parse_json(response.content)


def _error(response: requests.Response) -> CommercetoolsError:
    errors: list[Json] = []
    try:
        body = parse_json(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    code = errors[0].get("code") if errors else None
    # CT's messages here name fields and types (no customer data): worth showing the operator.
    detail = "; ".join(str(e.get("message")) for e in errors if e.get("message"))
    return CommercetoolsError(
        f"commercetools subscriptions: HTTP {response.status_code}"
        + (f" {code}" if code else "") + (f": {detail}" if detail else ""),
        status=response.status_code, code=code, errors=errors,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )


# ---- commands ---------------------------------------------------------------------------------


def create(
    api: SubscriptionApi, key: str, needed: Needed, *, recreate: bool = False
) -> tuple[str, Json]:
    """Create or update the subscription; returns (what was done, the subscription)."""
    existing = api.get(key)
    if existing is None:
        return "created", api.create(needed.draft(key))
    if not _same_format(existing.get("format"), needed.format):
        if not recreate:
            raise ConfigError(
                f"subscription {key!r} uses the {existing.get('format', {}).get('type')} "
                "format and "
                "commercetools cannot change a format in place; "
                "run `create --recreate` to replace it"
            )
        api.delete(key, existing["version"])
        return "recreated", api.create(needed.draft(key))
    actions = update_actions(existing, needed)
    if not actions:
        return "unchanged", existing
    return "updated (" + ", ".join(a["action"] for a in actions) + ")", api.update(
        key, existing["version"], actions)


def delete(api: SubscriptionApi, key: str) -> bool:
    existing = api.get(key)
    if existing is None:
        return False
    api.delete(key, existing["version"])
    return True


def _settings() -> Settings:
    # Subscriptions need commercetools credentials and the processor settings, not Klaviyo: a
    # missing KLAVIYO_API_KEY must not stop an operator from inspecting or removing the
    # subscription.
    try:
        return load_settings()
    except ConfigError as exc:
        if "KLAVIYO_API_KEY (missing)" not in str(exc):
            raise
    return load_settings(klaviyo_api_key="unused-by-deploy.subscriptions")


def main(argv: Sequence[str] | None = None, *, api: SubscriptionApi | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.subscriptions",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("show", "create", "delete"))
    parser.add_argument("--key", default=os.environ.get("CT_SUBSCRIPTION_KEY", DEFAULT_KEY),
                        help=f"subscription key (default {DEFAULT_KEY}; env CT_SUBSCRIPTION_KEY)")
    parser.add_argument("--project", default=None,
                        help="Google Cloud project of the topic (default GOOGLE_CLOUD_PROJECT)")
    parser.add_argument("--topic", default=os.environ.get("CT_MESSAGES_TOPIC", DEFAULT_TOPIC),
                        help=f"Pub/Sub topic id (default {DEFAULT_TOPIC}; env CT_MESSAGES_TOPIC)")
    parser.add_argument("--scopes", default=None,
                        help="space-separated CT scopes for this command (default CTP_SCOPES)")
    parser.add_argument("--recreate", action="store_true",
                        help="create: replace a subscription whose format differs")
    args = parser.parse_args(argv)

    try:
        settings = _settings()
        api = api or SubscriptionApi.from_settings(
            settings, scopes=args.scopes.split() if args.scopes else None)
        if args.command == "delete":
            removed = delete(api, args.key)
            print(f"subscription {args.key!r}: "
                  + ("deleted" if removed else "absent, nothing to do"))
            return 0
        project = args.project or settings.google_cloud_project
        if not project:
            raise ConfigError("invalid configuration: --project or GOOGLE_CLOUD_PROJECT (missing)")
        needed = needed_subscription(enabled_processors(settings), project_id=project,
                                     topic=args.topic)
        if args.command == "show":
            existing = api.get(args.key)
            print("\n".join(report(args.key, api.project_key, existing, needed)))
            return 0 if in_sync(existing, needed) else 1
        done, subscription = create(api, args.key, needed, recreate=args.recreate)
        print(f"subscription {args.key!r}: {done} (version {subscription.get('version')}, "
              f"destination {_fmt_destination(subscription.get('destination'))})")
        if done != "unchanged":
            print("commercetools applies subscription changes within about a minute.")
        return 0
    except ConnectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
