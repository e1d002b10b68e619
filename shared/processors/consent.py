"""Customer consent custom field(s) → Klaviyo email/SMS marketing subscribe or unsubscribe.

Driven by Messages only, never by the customer's ResourceUpdated change notification: a change
notification does not say what changed, so acting on it would unsubscribe a customer whose field
says "no" on *every* edit of their name or address, overriding consent they gave elsewhere (a
Klaviyo sign-up form, say). Messages name the field that changed:

  CustomerCreated, CustomerEmailChanged     subscribe when the field says yes (nothing to withdraw)
  CustomerCustomFieldAdded / Changed        the consent field: subscribe or unsubscribe
  CustomerCustomFieldRemoved                the consent field cleared: unsubscribe
  CustomerCustomTypeSet                     a new set of fields: subscribe or unsubscribe

The value is read from the customer as it is *now* (deliveries are unordered: a late "yes" must not
undo a later "no"); the message only decides whether and for which channel to act.
Without CONSENT_FIELD / CONSENT_SMS_FIELD the processor has no trigger: nothing is subscribed to,
nothing is sent.
"""

from __future__ import annotations

from functools import partial

from shared.commercetools.messages import CtMessage
from shared.commercetools.models.customer import Customer
from shared.config import Settings
from shared.log import get_logger
from shared.mapping.consent import Channel, ConsentConfig, consent_change, decisions
from shared.processors.base import Context, Processor, Trigger, read_current

log = get_logger(__name__)

SUBSCRIBE_ONLY = frozenset({"CustomerCreated", "CustomerEmailChanged"})
FIELD_MESSAGES = frozenset({"CustomerCustomFieldAdded", "CustomerCustomFieldChanged"})
FIELD_REMOVED = "CustomerCustomFieldRemoved"
TYPE_SET = "CustomerCustomTypeSet"
CONSENT_MESSAGES = SUBSCRIBE_ONLY | FIELD_MESSAGES | {FIELD_REMOVED, TYPE_SET}
CUSTOM_SOURCE = "commercetools"


def _channels(message: CtMessage, config: ConsentConfig) -> list[Channel] | None:
    """The channels a field message is about; None: all configured (no field name to go by)."""
    if message.message_type not in FIELD_MESSAGES | {FIELD_REMOVED}:
        return None
    name = message.payload.get("name")
    if not isinstance(name, str):  # payloadNotIncluded: the current state decides
        return None
    return [channel for channel, field in config.fields().items() if field == name]


def sync_consent(message: CtMessage, ctx: Context, *, config: ConsentConfig) -> int:
    if not config.enabled:  # the trigger is empty then; kept for direct calls
        return 0
    customer_id = message.resource.id
    channels = _channels(message, config)
    if channels == []:
        return 0  # another custom field changed: consent did not
    customer = read_current(ctx, "customers", customer_id, Customer)
    if customer is None:
        return 0
    wanted = decisions(
        customer, config, channels=channels,
        allow_unsubscribe=message.message_type not in SUBSCRIBE_ONLY,
        removed_means_withdrawn=message.message_type == FIELD_REMOVED,
    )
    change = consent_change(customer, config, wanted)
    if change.skipped:
        log.info("consent channel without email/phone on the customer; skipped",
                 ctCustomerId=customer_id, channels=list(change.skipped))
    writes = 0
    if change.subscribe is not None:
        historical = config.historical_import and all(
            "consented_at" in s["marketing"] for s in change.subscribe["subscriptions"].values()
        )
        ctx.klaviyo.subscribe_profiles(
            [change.subscribe], list_id=config.list_id, historical_import=historical,
            custom_source=CUSTOM_SOURCE, deadline=ctx.deadline,
        )
        writes += 1
        log.info("consent subscribed", ctCustomerId=customer_id,
                 channels=sorted(change.subscribe["subscriptions"]))
    if change.unsubscribe is not None:
        ctx.klaviyo.unsubscribe_profiles([change.unsubscribe], list_id=config.list_id,
                                         deadline=ctx.deadline)
        writes += 1
        log.info("consent unsubscribed", ctCustomerId=customer_id,
                 channels=sorted(change.unsubscribe["subscriptions"]))
    if not writes:
        log.info("no consent decision; nothing sent", ctCustomerId=customer_id,
                 messageType=message.message_type)
    return writes


def processors(settings: Settings) -> list[Processor]:
    # Always registered, so DISABLED_PROCESSORS=CustomerConsent is a known name; without a
    # configured field the trigger is empty, so the CT subscription does not grow either.
    config = ConsentConfig.from_settings(settings)
    trigger = Trigger("customer", messages=CONSENT_MESSAGES if config.enabled else frozenset())
    return [Processor("CustomerConsent", trigger, partial(sync_consent, config=config))]
