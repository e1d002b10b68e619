"""A variant's Klaviyo `inventory_quantity` from commercetools stock. Pure.

Two sources, one rule (anchor §2.15): a product's variant availability (product sync and bulk)
and a SKU's inventory entries (inventory messages). Where it differs from the reference plugin,
see the notes on the two functions.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.commercetools.models.inventory import InventoryEntry
from shared.commercetools.models.product import ProductVariantAvailability


def availability_quantity(
    availability: ProductVariantAvailability | None, channel_id: str | None = None
) -> int:
    """`inventory_quantity` from a variant's availability (product sync and bulk).

    The configured channel's quantity when the variant has stock there, 0 included (the reference
    treated 0 as "no value" and fell back to other stock); else the channel-less quantity; else 0.
    """
    if availability is None:
        return 0
    if channel_id and channel_id in availability.channels:
        quantity = availability.channels[channel_id].available_quantity
        if quantity is not None:
            return quantity
    return availability.available_quantity or 0


def inventory_quantity(entries: Iterable[InventoryEntry], channel_id: str | None = None) -> int:
    """`inventory_quantity` from all current inventory entries of one SKU (inventory messages).

    Same rule as `availability_quantity`: the configured channel's entry wins, 0 included; a
    channel-less entry is the fallback and never overwrites it; entries of other channels are
    ignored; no entry (e.g. the last one was deleted) means 0.
    """
    channel_less: InventoryEntry | None = None
    for entry in entries:
        if entry.supply_channel is None:
            channel_less = entry
        elif channel_id and entry.supply_channel.id == channel_id:
            return entry.available_quantity
    return channel_less.available_quantity if channel_less is not None else 0
