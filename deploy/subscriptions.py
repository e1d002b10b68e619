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

This module is the commands; what is needed and how an existing subscription differs is
`deploy.subscription_plan` (pure), the HTTP calls are `deploy.subscription_api`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from deploy.subscription_api import SubscriptionApi
from deploy.subscription_plan import (
    Json,
    Needed,
    describe_destination,
    in_sync,
    needed_subscription,
    report,
    same_format,
    update_actions,
)
from shared.config import Settings, load_settings
from shared.errors import ConfigError, ConnectorError
from shared.processors import enabled_processors

DEFAULT_KEY = "klaviyo-connector"
DEFAULT_TOPIC = "ct-klaviyo-ct-messages"


# ---- commands ---------------------------------------------------------------------------------


def create(
    api: SubscriptionApi, key: str, needed: Needed, *, recreate: bool = False
) -> tuple[str, Json]:
    """Create or update the subscription; returns (what was done, the subscription)."""
    existing = api.get(key)
    if existing is None:
        return "created", api.create(needed.draft(key))
    if not same_format(existing.get("format"), needed.format):
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
              f"destination {describe_destination(subscription.get('destination'))})")
        if done != "unchanged":
            print("commercetools applies subscription changes within about a minute.")
        return 0
    except ConnectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
