"""Table tests of the consent field → Klaviyo subscription mapping (shared/mapping/consent.py)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.commercetools.models.customer import Customer
from shared.config import load_settings
from shared.errors import ConfigError
from shared.mapping.consent import (
    Channel,
    ConsentChange,
    ConsentConfig,
    Decision,
    consent_change,
    consent_decision,
    decisions,
)

CONFIG = ConsentConfig(email_field="newsletter", sms_field="smsOptIn", list_id="L1")


def customer(fields: dict[str, Any] | None = None, **changes: Any) -> Customer:
    doc: dict[str, Any] = {
        "id": "cust-1", "email": "jane@example.org",
        "lastModifiedAt": "2026-02-03T04:05:06.789Z",
        "addresses": [{"id": "a", "country": "GB", "mobile": "+44 7700 900123",
                       "phone": "+44 20 7946 0958"}],
        "custom": {"type": {"typeId": "type", "id": "t"}, "fields": fields or {}},
        **changes,
    }
    return Customer.model_validate(doc)


@pytest.mark.parametrize(
    ("value", "decision"),
    [
        (True, "subscribe"),
        (False, "unsubscribe"),
        ({"key": "yes", "label": "Yes please"}, "subscribe"),  # Enum
        ({"key": "NO", "label": {"en": "No"}}, "unsubscribe"),  # LocalizedEnum, any case
        ("Yes", "subscribe"),
        (" true ", "subscribe"),
        ("false", "unsubscribe"),
        ("maybe", None),
        ("", None),
        (None, None),
        (1, None),  # a number is not a consent statement
        (0, None),
        (["yes"], None),  # a Set field
        ({"label": "Yes"}, None),  # enum value without key
    ],
)
def test_consent_decision(value: Any, decision: str | None) -> None:
    assert consent_decision(value, CONFIG) == decision


def test_operator_values_for_enum_keys() -> None:
    config = ConsentConfig(email_field="f", list_id="L", granted_values=frozenset({"opt-in"}),
                           withdrawn_values=frozenset({"opt-out"}))
    assert consent_decision({"key": "Opt-In"}, config) == "subscribe"
    assert consent_decision({"key": "opt-out"}, config) == "unsubscribe"
    assert consent_decision("yes", config) is None  # only the configured words count


@pytest.mark.parametrize(
    ("fields", "kwargs", "expected"),
    [
        ({"newsletter": True, "smsOptIn": True}, {}, {"email": "subscribe", "sms": "subscribe"}),
        ({"newsletter": True, "smsOptIn": False}, {}, {"email": "subscribe", "sms": "unsubscribe"}),
        ({"newsletter": False}, {}, {"email": "unsubscribe"}),
        ({}, {}, {}),  # never subscribe (nor unsubscribe) without the explicit field
        ({"other": True, "newsletter": None}, {}, {}),
        ({"newsletter": False, "smsOptIn": True}, {"allow_unsubscribe": False},
         {"sms": "subscribe"}),
        ({"newsletter": True, "smsOptIn": True}, {"channels": ["sms"]}, {"sms": "subscribe"}),
        ({}, {"channels": ["email"], "removed_means_withdrawn": True}, {"email": "unsubscribe"}),
        ({"newsletter": True}, {"channels": ["email"], "removed_means_withdrawn": True},
         {"email": "subscribe"}),  # set again since: the current value wins
        ({"newsletter": "maybe"}, {"removed_means_withdrawn": True}, {"sms": "unsubscribe"}),
    ],
    ids=["both-yes", "email-yes-sms-no", "email-no", "no-fields", "unrelated-or-null",
         "no-unsubscribe-on-create", "only-named-channel", "removed", "removed-then-set",
         "unknown-value-is-not-removal"],
)
def test_decisions(fields: dict[str, Any], kwargs: dict[str, Any],
                   expected: dict[str, str]) -> None:
    assert decisions(customer(fields), CONFIG, **kwargs) == expected


def test_no_configured_field_decides_nothing() -> None:
    assert decisions(customer({"newsletter": True}), ConsentConfig()) == {}
    assert not ConsentConfig().enabled


SUBSCRIBED_AT = {"consent": "SUBSCRIBED", "consented_at": "2026-02-03T04:05:06.789Z"}


@pytest.mark.parametrize(
    ("wanted", "config", "customer_changes", "change"),
    [
        ({"email": "subscribe"}, CONFIG, {},
         ConsentChange(subscribe={"email": "jane@example.org",
                                  "subscriptions": {"email": {"marketing": SUBSCRIBED_AT}}})),
        ({"email": "subscribe", "sms": "subscribe"}, CONFIG, {},
         ConsentChange(subscribe={"email": "jane@example.org", "phone_number": "+447700900123",
                                  "subscriptions": {"email": {"marketing": SUBSCRIBED_AT},
                                                    "sms": {"marketing": SUBSCRIBED_AT}}})),
        ({"email": "subscribe", "sms": "unsubscribe"}, CONFIG, {},
         ConsentChange(
             subscribe={"email": "jane@example.org",
                        "subscriptions": {"email": {"marketing": SUBSCRIBED_AT}}},
             unsubscribe={"phone_number": "+447700900123",
                          "subscriptions": {"sms": {"marketing": {"consent": "UNSUBSCRIBED"}}}})),
        ({"email": "unsubscribe"}, CONFIG, {},
         ConsentChange(unsubscribe={"email": "jane@example.org", "subscriptions": {
             "email": {"marketing": {"consent": "UNSUBSCRIBED"}}}})),
        ({"email": "subscribe"},
         ConsentConfig(email_field="newsletter", list_id="L1", historical_import=False), {},
         ConsentChange(subscribe={"email": "jane@example.org", "subscriptions": {
             "email": {"marketing": {"consent": "SUBSCRIBED"}}}})),
        ({"sms": "subscribe"}, CONFIG, {"addresses": [{"country": "GB", "phone": "0207 946"}]},
         ConsentChange(skipped=("sms",))),  # no E.164 number: nothing to subscribe
        ({"email": "subscribe", "sms": "subscribe"}, CONFIG, {"email": None},
         ConsentChange(subscribe={"phone_number": "+447700900123", "subscriptions": {
             "sms": {"marketing": SUBSCRIBED_AT}}}, skipped=("email",))),
        ({}, CONFIG, {}, ConsentChange()),
    ],
    ids=["email", "email-and-sms", "split", "unsubscribe", "no-historical-import",
         "sms-without-phone", "email-without-email", "nothing"],
)
def test_consent_change_bodies(wanted: dict[Channel, Decision], config: ConsentConfig,
                               customer_changes: dict[str, Any], change: ConsentChange) -> None:
    assert consent_change(customer(**customer_changes), config, wanted) == change


REQUIRED = {"ctp_project_key": "p", "ctp_client_id": "i", "ctp_client_secret": "s",
            "ctp_api_url": "http://ct", "ctp_auth_url": "http://ct", "klaviyo_api_key": "k"}


def test_settings_default_to_no_consent_and_no_deletion() -> None:
    settings = load_settings(**REQUIRED)
    assert not ConsentConfig.from_settings(settings).enabled
    assert settings.customer_deletion_enabled is False
    config = ConsentConfig.from_settings(load_settings(
        **REQUIRED, consent_field="newsletter", consent_list_id="L1",
        consent_granted_values="Opt-In, YES", consent_sms_field="  ",
    ))
    assert config == ConsentConfig(email_field="newsletter", list_id="L1",
                                   granted_values=frozenset({"opt-in", "yes"}))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"consent_field": "newsletter"}, "CONSENT_LIST_ID"),
        ({"consent_sms_field": "sms", "consent_list_id": " "}, "CONSENT_LIST_ID"),
        ({"consent_field": "n", "consent_list_id": "L", "consent_withdrawn_values": "yes,no"},
         "CONSENT_WITHDRAWN_VALUES"),
        ({"customer_deletion_enabled": "perhaps"}, "CUSTOMER_DELETION_ENABLED"),
    ],
)
def test_bad_consent_settings_fail_naming_the_variable(settings: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**REQUIRED, **settings)
