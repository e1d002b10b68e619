"""Building blocks shared by every commercetools resource model."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CtModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True,
        defer_build=True,
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


def _iso_timestamp(value: str) -> str:
    """commercetools sends ISO 8601 date-times; anything else fails validation here, where the
    processors acknowledge it as bad data, instead of raising a ValueError in the mapping that
    converts it for Klaviyo (an unhandled error: redelivered until dead-lettered, or a failed
    bulk job)."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("must be an ISO 8601 date-time") from None
    return value


Timestamp = Annotated[str, AfterValidator(_iso_timestamp)]
