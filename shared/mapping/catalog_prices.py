"""Which of a variant's commercetools prices Klaviyo shows as its `price`. Pure.

Baseline is the reference plugin's priority (anchor §2.13); where it differs, see `select_price`.
The per-currency prices in custom metadata (`price_json`) are `catalog_metadata`'s, built on the
same choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from shared.commercetools.models.product import Price
from shared.mapping.common import money_value


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def select_price(
    prices: Sequence[Price], currency: str | None = None, *, now: datetime | None = None
) -> Price | None:
    """The price shown for a variant, by the reference plugin's priority (anchor §2.13):

    1. only prices in `currency` when one is given;
    2. a *ranged* price (with validFrom and/or validUntil) active now wins; among several, the
       earliest-started (then earliest-ending) one. Future and expired ones never count;
    3. else the first *regular* price (no validity dates) in commercetools' order.

    Differs from the reference: customer-group prices are never chosen (it skipped them only
    among regular prices), because a group's price is not the public price.
    """
    now = _utc(now or datetime.now(UTC))
    candidates = [
        p for p in prices
        if p.customer_group is None and (not currency or p.value.currency_code == currency)
    ]
    ranged = [
        p for p in candidates
        if (p.valid_from or p.valid_until)
        and (p.valid_from is None or _utc(p.valid_from) <= now)
        and (p.valid_until is None or now <= _utc(p.valid_until))
    ]
    if ranged:
        far = datetime.max.replace(tzinfo=UTC)
        return min(
            ranged,
            key=lambda p: (
                _utc(p.valid_from) if p.valid_from else now,
                _utc(p.valid_until) if p.valid_until else far,
            ),
        )
    return next((p for p in candidates if not p.valid_from and not p.valid_until), None)


def price_value(
    prices: Sequence[Price], currency: str | None = None, *, now: datetime | None = None
) -> float:
    """Klaviyo `price`: the selected price in major units, 0 when none matches."""
    chosen = select_price(prices, currency, now=now)
    return money_value(chosen.value) if chosen else 0.0
