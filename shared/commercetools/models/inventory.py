"""InventoryEntry: the stock of one SKU, channel-less or for one supply channel."""

from __future__ import annotations

from shared.commercetools.models.base import CtModel, Reference


class InventoryEntry(CtModel):
    id: str
    version: int | None = None
    sku: str
    supply_channel: Reference | None = None
    quantity_on_stock: int = 0
    available_quantity: int = 0
    restockable_in_days: int | None = None
    expected_delivery: str | None = None
