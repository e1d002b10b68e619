"""Building blocks shared by every commercetools resource model."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CtModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class Reference(CtModel):
    type_id: str
    id: str
    obj: dict[str, Any] | None = None


class CustomFields(CtModel):
    fields: dict[str, Any] = {}


class Money(CtModel):
    """TypedMoney (centPrecision or highPrecision)."""

    currency_code: str
    cent_amount: int
    fraction_digits: int = 2
    precise_amount: int | None = None

    @property
    def amount(self) -> Decimal:
        """Major units, exact: high-precision money uses its precise amount."""
        if self.precise_amount is not None:
            return Decimal(self.precise_amount).scaleb(-self.fraction_digits)
        return Decimal(self.cent_amount).scaleb(-self.fraction_digits)


LocalizedString = dict[str, str]
