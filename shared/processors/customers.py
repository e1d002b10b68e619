"""Customer created/changed → one Klaviyo profile upsert."""

from __future__ import annotations

from shared.commercetools.messages import CtMessage
from shared.commercetools.models.customer import Customer
from shared.config import Settings
from shared.log import get_logger
from shared.mapping.customers import map_profile
from shared.processors.base import Context, Processor, Trigger

log = get_logger(__name__)

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


def sync_customer(message: CtMessage, ctx: Context) -> int:
    """Upsert the profile from the customer's *current* state in commercetools.

    Deliveries are at-least-once and unordered, so even a CustomerCreated with its payload may
    arrive after later changes; reading the customer by id means a late message never writes
    stale data (and a customer deleted meanwhile is not re-created in Klaviyo).
    """
    customer_id = message.resource.id
    document = ctx.ct.get_customer(customer_id, deadline=ctx.deadline)
    if document is None:
        log.info("customer no longer exists; skipped", ctCustomerId=customer_id)
        return 0
    customer = Customer.model_validate(document)
    if not customer.email:
        log.info("customer has no email; skipped", ctCustomerId=customer_id)
        return 0
    attributes = map_profile(
        customer,
        include=ctx.settings.customer_properties_include,
        exclude=ctx.settings.customer_properties_exclude,
        rename=ctx.settings.customer_properties_rename,
    )
    ctx.klaviyo.upsert_profile(attributes, deadline=ctx.deadline)
    return 1


def processors(settings: Settings) -> list[Processor]:
    return [
        Processor(
            "CustomerCreated", Trigger("customer", messages=frozenset({"CustomerCreated"})), sync_customer
        ),
        Processor(
            "CustomerUpdated", Trigger("customer", messages=CUSTOMER_UPDATE_MESSAGES), sync_customer
        ),
        Processor(
            "CustomerResourceUpdated",
            Trigger("customer", changes=frozenset({"ResourceUpdated"})),
            sync_customer,
        ),
    ]
