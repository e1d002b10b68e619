"""Payment and its transactions (refunds are read from here)."""

from __future__ import annotations

from shared.commercetools.models.base import CtModel, Money, Timestamp


class Transaction(CtModel):
    id: str
    type: str  # Authorization | CancelAuthorization | Charge | Refund | Chargeback
    state: str  # Initial | Pending | Success | Failure
    amount: Money
    timestamp: Timestamp | None = None
    interaction_id: str | None = None


class Payment(CtModel):
    id: str
    version: int | None = None
    amount_planned: Money | None = None
    transactions: list[Transaction] = []
