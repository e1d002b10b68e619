"""A customer's marketing-consent custom fields → Klaviyo subscribe / unsubscribe entries. Pure.

Consent is only ever read from the field(s) the operator names (CONSENT_FIELD, CONSENT_SMS_FIELD):
a customer is never subscribed because of anything else, and without a configured field nothing is
produced at all. A value is read as:

  boolean                       true → subscribe, false → unsubscribe
  enum / lenum ({key, label})   its key, then as a string
  string                        in CONSENT_GRANTED_VALUES → subscribe,
                                in CONSENT_WITHDRAWN_VALUES → unsubscribe (case-insensitive)
  absent, null, anything else   no decision: nothing is sent for that channel

Body shapes follow Klaviyo's OpenAPI (revision 2026-07-15) `SubscriptionCreateJobCreateQuery` /
`SubscriptionDeleteJobCreateQuery`: per profile `email` / `phone_number` and `subscriptions`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from shared.commercetools.models.customer import Customer
from shared.mapping.common import klaviyo_time
from shared.mapping.customers import normalize_phone, select_address

Decision = Literal["subscribe", "unsubscribe"]
Channel = Literal["email", "sms"]


@dataclass(frozen=True)
class ConsentConfig:
    email_field: str | None = None
    sms_field: str | None = None
    list_id: str | None = None
    granted_values: frozenset[str] = frozenset({"true", "yes"})
    withdrawn_values: frozenset[str] = frozenset({"false", "no"})
    historical_import: bool = True

    @property
    def enabled(self) -> bool:
        return bool(self.email_field or self.sms_field)

    def fields(self) -> dict[Channel, str]:
        """channel → custom field name, for the channels that are configured."""
        fields: dict[Channel, str] = {}
        if self.email_field:
            fields["email"] = self.email_field
        if self.sms_field:
            fields["sms"] = self.sms_field
        return fields

    @classmethod
    def from_settings(cls, settings: Any) -> ConsentConfig:
        return cls(
            email_field=settings.consent_field,
            sms_field=settings.consent_sms_field,
            list_id=settings.consent_list_id,
            granted_values=frozenset(v.casefold() for v in settings.consent_granted_values),
            withdrawn_values=frozenset(v.casefold() for v in settings.consent_withdrawn_values),
            historical_import=settings.consent_historical_import,
        )


def consent_decision(value: Any, config: ConsentConfig) -> Decision | None:
    """What one custom field value says (see the module docstring); None: nothing to do."""
    if isinstance(value, bool):
        return "subscribe" if value else "unsubscribe"
    if isinstance(value, dict):  # Enum / LocalizedEnum value
        value = value.get("key")
    if not isinstance(value, str):
        return None
    text = value.strip().casefold()
    if text in config.granted_values:
        return "subscribe"
    if text in config.withdrawn_values:
        return "unsubscribe"
    return None


def field_value(customer: Customer, name: str) -> Any:
    return (customer.custom.fields if customer.custom else {}).get(name)


def customer_phone(customer: Customer) -> str | None:
    """The E.164 number the profile import sends (mobile first), or None."""
    address = select_address(customer)
    if address is None:
        return None
    return normalize_phone(address.mobile) or normalize_phone(address.phone)


@dataclass(frozen=True)
class ConsentChange:
    """The subscribe and/or unsubscribe entry for one customer (None: nothing of that kind)."""

    subscribe: dict[str, Any] | None = None
    unsubscribe: dict[str, Any] | None = None
    skipped: tuple[str, ...] = ()  # channels decided on but not sendable (no email / no phone)

    @property
    def empty(self) -> bool:
        return self.subscribe is None and self.unsubscribe is None


def decisions(
    customer: Customer, config: ConsentConfig, *, channels: Collection[Channel] | None = None,
    allow_unsubscribe: bool = True, removed_means_withdrawn: bool = False,
) -> dict[Channel, Decision]:
    """The decision per configured channel (only `channels` when given).

    `allow_unsubscribe=False` for deliveries that do not change consent (a customer created with
    the box unticked has nothing to withdraw, and an unsubscribe would override consent given
    elsewhere, e.g. a Klaviyo sign-up form). `removed_means_withdrawn` for a message saying the
    field was removed: clearing the consent field is taken as withdrawing it.
    """
    result: dict[Channel, Decision] = {}
    for channel, name in config.fields().items():
        if channels is not None and channel not in channels:
            continue
        value = field_value(customer, name)
        decision = consent_decision(value, config)
        if decision is None and value is None and removed_means_withdrawn:
            decision = "unsubscribe"
        if decision == "unsubscribe" and not allow_unsubscribe:
            continue
        if decision is not None:
            result[channel] = decision
    return result


def consent_change(
    customer: Customer, config: ConsentConfig, wanted: dict[Channel, Decision]
) -> ConsentChange:
    """Klaviyo profile entries for the decided channels.

    Email consent needs the customer's email, SMS consent an E.164 phone number; a channel without
    one is skipped (reported in `skipped`). consented_at is the customer's lastModifiedAt: the
    change that carried the consent (sent only with `historical_import`, as Klaviyo requires).
    """
    email = customer.email or None
    phone = customer_phone(customer) if "sms" in wanted else None
    consented_at = (
        klaviyo_time(customer.last_modified_at)
        if config.historical_import and customer.last_modified_at else None
    )
    subscribe: dict[str, Any] = {}
    unsubscribe: dict[str, Any] = {}
    skipped: list[str] = []
    for channel, decision in wanted.items():
        identifier = email if channel == "email" else phone
        if not identifier:
            skipped.append(channel)
            continue
        target = subscribe if decision == "subscribe" else unsubscribe
        target.setdefault("subscriptions", {})
        target["email" if channel == "email" else "phone_number"] = identifier
        if decision == "subscribe":
            parameters: dict[str, Any] = {"consent": "SUBSCRIBED"}
            if consented_at:
                parameters["consented_at"] = consented_at
        else:
            parameters = {"consent": "UNSUBSCRIBED"}
        target["subscriptions"][channel] = {"marketing": parameters}
    return ConsentChange(
        subscribe=_ordered(subscribe) or None,
        unsubscribe=_ordered(unsubscribe) or None,
        skipped=tuple(skipped),
    )


def _ordered(entry: dict[str, Any]) -> dict[str, Any]:
    # Identifiers first, then subscriptions: stable bodies read better in logs of the fake/tests.
    return {k: entry[k] for k in ("email", "phone_number", "subscriptions") if k in entry}
