"""Customer created/changed → one Klaviyo profile upsert."""

from __future__ import annotations

from functools import partial

from shared.commercetools.messages import CtMessage
from shared.commercetools.models.customer import Customer
from shared.config import Settings
from shared.errors import RetryableError
from shared.log import get_logger
from shared.mapping.customers import ProfileMappingConfig, map_profile
from shared.processors.base import Context, Processor, Trigger, read_current, validated

log = get_logger(__name__)

# Re-writes after the version moved during a write, before the delivery is redelivered instead.
MAX_STALE_REWRITES = 2


class StillChanging(RetryableError):
    """The resource kept changing while it was written: the redelivery writes its final state."""


# Messages commercetools emits for changes that alter a mapped profile field.
CUSTOMER_UPDATE_MESSAGES = frozenset(
    {
        "CustomerEmailChanged",
        "CustomerFirstNameSet",
        "CustomerLastNameSet",
        "CustomerTitleSet",
        "CustomerCompanyNameSet",
        "CustomerAddressAdded",
        "CustomerAddressChanged",
        "CustomerAddressRemoved",
        "CustomerBillingAddressAdded",
        "CustomerBillingAddressRemoved",
        "CustomerCustomFieldAdded",
        "CustomerCustomFieldChanged",
        "CustomerCustomFieldRemoved",
        "CustomerCustomTypeSet",
        "CustomerCustomTypeRemoved",
    }
)


def sync_customer(message: CtMessage, ctx: Context, *, config: ProfileMappingConfig) -> int:
    """Upsert the profile from the customer's *current* state in commercetools.

    Deliveries are at-least-once and unordered, so even a CustomerCreated with its payload may
    arrive after later changes; reading the customer by id means a late message never writes
    stale data (and a customer deleted meanwhile is not re-created in Klaviyo).

    Two deliveries for one customer can overlap, and the one that read the older version may
    write last. So after the write the customer's version is read again: if it moved past the
    one written, the latest state is written (at most MAX_STALE_REWRITES times, then the
    delivery is redelivered). Whichever delivery writes last has thus written the latest state.
    """
    customer_id = message.resource.id
    customer = read_current(ctx, "customers", customer_id, Customer)
    writes = 0
    for _ in range(1 + MAX_STALE_REWRITES):
        if customer is None:
            return writes
        if not customer.email:
            log.info("customer has no email; skipped", ctCustomerId=customer_id)
            return writes
        attributes = map_profile(customer, include=config.include, exclude=config.exclude,
                                 rename=config.rename)
        ctx.klaviyo.upsert_profile(attributes, deadline=ctx.deadline)
        writes += 1
        # Read raw: a customer deleted after the write is no "skipped" (its profile was written).
        latest = ctx.ct.get_customer(customer_id, deadline=ctx.deadline)
        if latest is None or latest.get("version") == customer.version:
            return writes
        log.info("customer changed while it was written; writing its latest state",
                 ctCustomerId=customer_id, writtenVersion=customer.version,
                 latestVersion=latest.get("version"))
        customer = validated("customers", customer_id, latest, Customer)
    raise StillChanging(f"customer changed during {MAX_STALE_REWRITES + 1} writes")


def processors(settings: Settings) -> list[Processor]:
    sync = partial(sync_customer, config=ProfileMappingConfig.from_settings(settings))
    return [
        Processor("CustomerCreated", Trigger("customer", messages=frozenset({"CustomerCreated"})),
                  sync),
        Processor("CustomerUpdated", Trigger("customer", messages=CUSTOMER_UPDATE_MESSAGES), sync),
        Processor("CustomerResourceUpdated",
                  Trigger("customer", changes=frozenset({"ResourceUpdated"})), sync),
    ]
