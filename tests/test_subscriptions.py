"""`python -m deploy.subscriptions` against the commercetools fake, over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deploy import subscription_plan, subscriptions
from shared.config import get_settings, load_settings
from shared.processors import all_processors, enabled_processors
from tests.fakes import ct_subscriptions
from tests.fakes.commercetools import FakeCommercetools

# the `cli` fixture: runs `python -m deploy.subscriptions ARGS…` → (exit status, stdout, stderr)
Cli = Callable[..., tuple[int, str, str]]

KEY = "klaviyo-connector"
PUBSUB = {"type": "GoogleCloudPubSub", "projectId": "demo", "topic": "ct-klaviyo-ct-messages"}


@pytest.fixture
def cli(ct: Any, ct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """Runs the command with the fake's credentials (and no Klaviyo key: it is not needed)."""
    for name, value in ct_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KLAVIYO_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo")

    def run(*argv: str, **env: str) -> tuple[int, str, str]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        code = subscriptions.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    get_settings.cache_clear()


def settings(**overrides: Any) -> Any:
    base = dict(ctp_project_key="p", ctp_client_id="c", ctp_client_secret="s",
                ctp_api_url="https://api.example", ctp_auth_url="https://auth.example",
                klaviyo_api_key="k", _env_file=None)
    return load_settings(**{**base, **overrides})


def updates(ct: Any) -> list[Any]:
    return [r for r in ct.api_requests("subscriptions") if r.method != "GET"]


# ---- what is needed comes from the processors' triggers ----------------------------------------


def test_needed_is_the_union_of_the_enabled_triggers_grouped_by_resource() -> None:
    processors = enabled_processors(settings())
    needed = subscription_plan.needed_subscription(processors, project_id="demo",
                                               topic="ct-klaviyo-ct-messages")
    assert needed.destination == PUBSUB
    assert needed.format == {"type": "Platform"}
    expected_messages: dict[str, set[str]] = {}
    expected_changes: set[str] = set()
    for p in processors:
        if p.trigger.messages:
            expected_messages.setdefault(p.trigger.resource, set()).update(p.trigger.messages)
        if p.trigger.changes:
            expected_changes.add(p.trigger.resource)
    assert {r: set(t) for r, t in needed.messages.items()} == expected_messages
    assert set(needed.changes) == expected_changes
    draft = needed.draft(KEY)
    assert [m["resourceTypeId"] for m in draft["messages"]] == sorted(expected_messages)
    assert all(m["types"] == sorted(m["types"]) for m in draft["messages"])


def test_a_disabled_processor_drops_what_only_it_needed() -> None:
    every = all_processors(settings())
    unique = next(p for p in every if p.trigger.messages and not any(
        q is not p and q.trigger.resource == p.trigger.resource
        and p.trigger.messages & q.trigger.messages for q in every))
    needed_all = subscription_plan.needed_subscription(every, project_id="d", topic="t")
    needed = subscription_plan.needed_subscription(
        enabled_processors(settings(disabled_processors=unique.name)), project_id="d", topic="t")
    resource = unique.trigger.resource
    assert unique.trigger.messages <= set(needed_all.messages[resource])
    assert not unique.trigger.messages & set(needed.messages.get(resource, ()))


def test_topic_path_is_reduced_to_its_id() -> None:
    needed = subscription_plan.needed_subscription(
        all_processors(settings()), project_id="demo",
        topic="projects/demo/topics/ct-klaviyo-ct-messages")
    assert needed.destination == PUBSUB


# ---- the commands, over HTTP ------------------------------------------------------------------


def test_create_then_rerun_changes_nothing(cli: Cli, ct: FakeCommercetools) -> None:
    code, out, _ = cli("show")
    assert code == 1 and "exists:      no" in out and "=> missing" in out

    code, out, _ = cli("create")
    assert code == 0 and f"subscription {KEY!r}: created (version 1" in out
    created = ct_subscriptions.stored(ct)[KEY]
    needed = subscription_plan.needed_subscription(
        enabled_processors(subscriptions._settings()), project_id="demo",
        topic="ct-klaviyo-ct-messages")
    assert created["destination"] == PUBSUB
    assert created["format"] == {"type": "Platform"}
    assert created["messages"] == needed.messages_json()
    assert created["changes"] == needed.changes_json()

    before = len(updates(ct))
    code, out, _ = cli("create")
    assert code == 0 and "unchanged (version 1" in out
    assert len(updates(ct)) == before  # nothing written
    code, out, _ = cli("show")
    assert code == 0 and "=> up to date" in out and "[differs" not in out


def test_create_updates_in_place_when_processors_or_topic_change(
    cli: Cli, ct: FakeCommercetools
) -> None:
    assert cli("create")[0] == 0
    code, out, _ = cli("create", DISABLED_PROCESSORS="OrderRefunded,CustomerResourceUpdated")
    assert code == 0 and "updated (setMessages, setChanges)" in out and "version 2" in out
    stored = ct_subscriptions.stored(ct)[KEY]
    assert "payment" not in {m["resourceTypeId"] for m in stored["messages"]}
    assert "customer" not in {c["resourceTypeId"] for c in stored["changes"]}

    # show, with the processors enabled again: the difference is named
    code, out, _ = cli("show", DISABLED_PROCESSORS="")
    assert code == 1
    assert ("payment: PaymentTransactionAdded, PaymentTransactionStateChanged  [differs: missing"
            in out)
    assert "customer (handled: ResourceUpdated)  [differs: missing]" in out

    code, out, _ = cli("create", "--topic", "other-topic", DISABLED_PROCESSORS="")
    assert code == 0 and "changeDestination" in out and "setMessages" in out
    stored = ct_subscriptions.stored(ct)[KEY]
    assert stored["destination"]["topic"] == "other-topic" and stored["version"] == 3


def test_a_subscription_for_all_messages_of_a_resource_is_narrowed(
    cli: Cli, ct: FakeCommercetools
) -> None:
    ct_subscriptions.seed(ct, {"key": KEY, "destination": PUBSUB,
                               "messages": [{"resourceTypeId": "customer"}]})
    code, out, _ = cli("show")
    assert code == 1 and "[differs: has all messages of this resource]" in out
    assert cli("create")[0] == 0
    stored = ct_subscriptions.stored(ct)[KEY]["messages"]
    types = {m["resourceTypeId"]: m.get("types") for m in stored}
    assert types["customer"] and "CustomerCreated" in types["customer"]


def test_a_cloudevents_subscription_is_only_replaced_on_request(
    cli: Cli, ct: FakeCommercetools
) -> None:
    ct_subscriptions.seed(ct, {"key": KEY, "destination": PUBSUB,
                               "changes": [{"resourceTypeId": "customer"}],
                               "format": {"type": "CloudEvents", "cloudEventsVersion": "1.0"}})
    code, out, _ = cli("show")
    assert code == 1 and "Platform  [differs: has CloudEvents]" in out and "--recreate" in out
    code, _, err = cli("create")
    assert code == 2 and "--recreate" in err
    assert ct_subscriptions.stored(ct)[KEY]["format"]["type"] == "CloudEvents"

    code, out, _ = cli("create", "--recreate")
    assert code == 0 and "recreated" in out
    assert ct_subscriptions.stored(ct)[KEY]["format"] == {"type": "Platform"}


def test_delete_by_key_and_version(cli: Cli, ct: FakeCommercetools) -> None:
    assert cli("create", "--key", "other")[0] == 0
    assert cli("create")[0] == 0
    code, out, _ = cli("delete")
    assert code == 0 and "deleted" in out
    assert list(ct_subscriptions.stored(ct)) == ["other"]
    deletes = [r for r in ct.api_requests("subscriptions") if r.method == "DELETE"]
    assert deletes[-1].param("version") == "1"
    code, out, _ = cli("delete")
    assert code == 0 and "absent, nothing to do" in out


def test_commercetools_errors_are_reported_not_raised(cli: Cli, ct: FakeCommercetools) -> None:
    ct.inject(403, times=None, path="/subscriptions")
    code, _, err = cli("create")
    assert code == 2 and "HTTP 403" in err


def test_no_project_is_an_error(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    code, _, err = cli("show")
    assert code == 2 and "GOOGLE_CLOUD_PROJECT" in err
