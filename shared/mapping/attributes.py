"""commercetools product/variant attributes → flat Klaviyo values (order items, catalog metadata).

commercetools attribute values are typed (text, localized text, enum, localized enum, number,
boolean, money, date/time, reference, set of any of these, nested). Klaviyo segments and
personalises on flat values, so each becomes what a shopper sees: the label of an enum, the text
in the resource's locale, a set joined with ", ". Nested attributes have no flat form and are
left out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from decimal import Decimal
from typing import Any

from shared.mapping.common import localized

SET_SEPARATOR = ", "
Scalar = str | int | float | bool


def _is_localized(value: Mapping[str, Any]) -> bool:
    return bool(value) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _money(value: Mapping[str, Any]) -> str | None:
    cents, currency = value.get("centAmount"), value.get("currencyCode")
    if not isinstance(cents, int) or isinstance(cents, bool) or not isinstance(currency, str):
        return None
    digits = value.get("fractionDigits")
    if not isinstance(digits, int) or isinstance(digits, bool):
        digits = 2  # commercetools' default for centPrecision money
    return f"{Decimal(cents).scaleb(-digits):f} {currency}"


def display_value(value: Any, locale: str | None = None) -> Scalar | None:
    """The value a shopper sees, as one flat JSON value; None when there is none to show."""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value or None
    if isinstance(value, list):
        parts = [display_value(v, locale) for v in value]
        shown = [str(p).lower() if isinstance(p, bool) else str(p) for p in parts
                 if p is not None]
        # A nested attribute is a list of {name, value} lists: no flat form.
        if any(isinstance(v, list) for v in value):
            return None
        return SET_SEPARATOR.join(shown) or None
    if isinstance(value, Mapping):
        if "label" in value:  # enum / localized enum
            label = value["label"]
            if isinstance(label, Mapping):
                return localized(dict(label), locale) or value.get("key") or None
            return label or value.get("key") or None
        if "centAmount" in value:
            return _money(value)
        if "typeId" in value:  # reference: its id (a name would need another read)
            return str(value.get("id") or "") or None
        if _is_localized(value):
            return localized(dict(value), locale)
    return None


def attribute_values(
    attributes: Iterable[Any], locale: str | None = None, *,
    include: Collection[str] = (), exclude: Collection[str] = (),
) -> dict[str, Scalar]:
    """{name: display value} of the attributes, `include` (empty: all) minus `exclude`.

    `attributes` are commercetools `Attribute`s, as models (`.name`, `.value`) or raw dicts.
    An attribute without a displayable value is left out.
    """
    values: dict[str, Scalar] = {}
    for attribute in attributes:
        if isinstance(attribute, Mapping):
            name, raw = attribute.get("name"), attribute.get("value")
        else:
            name, raw = getattr(attribute, "name", None), getattr(attribute, "value", None)
        if not isinstance(name, str) or not name:
            continue
        if (include and name not in include) or name in exclude:
            continue
        shown = display_value(raw, locale)
        if shown is not None:
            values.setdefault(name, shown)
    return values
