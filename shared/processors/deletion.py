"""CustomerDeleted → Klaviyo GDPR profile deletion (data-privacy deletion job). Off by default.

A commercetools customer deletion is not always an erasure request (duplicate or test accounts,
account merges), while Klaviyo's deletion is irreversible, removes *every* profile with that email,
and with it the order history, consent records and data other sources added. So it only runs with
CUSTOMER_DELETION_ENABLED=true; otherwise the processor has no trigger.

The profile is named by the email in the message (commercetools added `email` to CustomerDeleted:
the customer can no longer be read), else found by external_id (the customer id), since Klaviyo
deletes only by email, phone number or its own profile id. Logs carry ids only.
"""

from __future__ import annotations

from functools import partial

from shared.commercetools.messages import CtMessage
from shared.config import Settings
from shared.log import get_logger
from shared.processors.base import Context, Processor, Trigger

log = get_logger(__name__)


def delete_profile(message: CtMessage, ctx: Context, *, enabled: bool) -> int:
    if not enabled:  # the trigger is empty then; kept for direct calls
        return 0
    customer_id = message.resource.id
    email = message.payload.get("email")
    if isinstance(email, str) and email.strip():
        ctx.klaviyo.request_profile_deletion(email=email.strip(), deadline=ctx.deadline)
        log.info("klaviyo profile deletion requested", ctCustomerId=customer_id, by="email")
        return 1
    profile = ctx.klaviyo.find_profile_by_external_id(customer_id, deadline=ctx.deadline)
    if profile is None:
        log.info("no klaviyo profile for the deleted customer; nothing to delete",
                 ctCustomerId=customer_id)
        return 0
    ctx.klaviyo.request_profile_deletion(profile_id=str(profile["id"]), deadline=ctx.deadline)
    log.info("klaviyo profile deletion requested", ctCustomerId=customer_id, by="externalId",
             klaviyoProfileId=profile["id"])
    return 1


def processors(settings: Settings) -> list[Processor]:
    # Always registered (a known name for DISABLED_PROCESSORS); no trigger unless enabled, so the
    # commercetools subscription only asks for CustomerDeleted when it will be acted on.
    enabled = settings.customer_deletion_enabled
    messages = frozenset({"CustomerDeleted"}) if enabled else frozenset()
    return [Processor("CustomerDeleted", Trigger("customer", messages=messages),
                      partial(delete_profile, enabled=enabled))]
