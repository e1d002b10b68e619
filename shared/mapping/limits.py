"""Klaviyo's limits on event properties (count, string size, array length, depth, total bytes),
enforced by truncating deterministically. Pure; order and cart events both use it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from shared.log import get_logger

log = get_logger(__name__)

# Properties the connector generates for order and cart events; the rest are operator-selected
# raw fields, which are cut first when an event is over the limits.
GENERATED_KEYS = frozenset({
    "OrderId", "OrderNumber", "ItemNames", "Categories", "Items", "DiscountCode", "DiscountValue",
    "ShippingMethod", "ShippingValue", "PaymentId", "ProductID", "SKU", "ProductName", "Quantity",
    "ItemPrice", "RowTotal", "ProductURL", "ImageURL", "Attributes", "Brand", "Brands",
    "BillingAddress", "ShippingAddress", "TotalTax",
})
# Klaviyo's event limits (reference/api-facts.md §3.3). The property count is the stricter of the
# two documented numbers; the byte budget leaves room under the 5 MB payload for the envelope.
MAX_PROPERTIES = 300
MAX_STRING_BYTES = 100 * 1024
MAX_ARRAY_ITEMS = 4000
MAX_DEPTH = 10
MAX_PROPERTIES_BYTES = 4 * 1024 * 1024

# The size *bounds* below only decide whether the exact size must be measured (`_size`): a
# larger bound just measures more often, so mutants that raise it are equivalent; they are kept
# out of mutation testing (`no mutate`), and the tests pin the limits on the results instead.
# pragma: no mutate start
_SHORT_STRING = MAX_STRING_BYTES // 4  # UTF-8 needs at most 4 bytes a character: these fit
_SMALL_INT = 10**18


def _key_bound(key: Any) -> float:
    """The most bytes `json.dumps` writes for a dict key with its colon and comma (infinite
    when that is not cheap to tell: a key json.dumps refuses must reach `_size`)."""
    kind = type(key)
    if kind is str:
        return 12 * len(key) + 4
    if key is None or kind is bool or kind is float or (
            kind is int and -_SMALL_INT < key < _SMALL_INT):
        return 30
    return math.inf


def _scalar_bound(value: Any) -> float:
    kind = type(value)
    if value is None or kind is bool or kind is float or (
            kind is int and -_SMALL_INT < value < _SMALL_INT):
        return 25
    return math.inf  # serialised with `default=str` (or a subclass): only `_size` can tell


def _plain(value: Any) -> float | None:
    """The JSON size bound of a value that no limit can change (a short string, a number, a
    boolean, null); None for anything else."""
    kind = type(value)
    if kind is str:
        return 12 * len(value) + 2 if len(value) <= _SHORT_STRING else None
    if value is None or kind is bool or kind is float or (
            kind is int and -_SMALL_INT < value < _SMALL_INT):
        return 25
    return None


# pragma: no mutate end


def _limit_value(value: Any, depth: int, counter: list[int], bound: list[float]) -> Any:
    """`value` cut to Klaviyo's string, array and nesting limits; `depth` is its container's.

    Adds what was cut to `counter[0]`, and to `bound[0]` at most the bytes `json.dumps` writes
    for the result (ASCII: at most 12 per character, for an escaped surrogate pair).
    """
    if isinstance(value, str):
        if len(value) > _SHORT_STRING:
            encoded = value.encode()
            if len(encoded) > MAX_STRING_BYTES:
                counter[0] += 1
                value = encoded[:MAX_STRING_BYTES].decode(errors="ignore")
        bound[0] += 12 * len(value) + 2  # pragma: no mutate
        return value
    if isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        counter[0] += 1
        return None
    if isinstance(value, dict):
        out = {}
        size = 2.0  # pragma: no mutate
        for key, inner in value.items():
            plain = _plain(inner)
            if plain is not None:  # kept as it is, no call needed
                size += plain  # pragma: no mutate
                limited = inner
            else:
                limited = _limit_value(inner, depth + 1, counter, bound)
                if limited is None and inner is not None:
                    continue
            out[key] = limited
            size += 12 * len(key) + 4 if type(key) is str else _key_bound(key)  # pragma: no mutate
        bound[0] += size  # pragma: no mutate
        return out
    if isinstance(value, list):
        if len(value) > MAX_ARRAY_ITEMS:
            counter[0] += len(value) - MAX_ARRAY_ITEMS
            value = value[:MAX_ARRAY_ITEMS]
        out_list = []
        size = 2.0  # pragma: no mutate
        for inner in value:
            plain = _plain(inner)
            if plain is not None:
                size += plain + 1  # pragma: no mutate
                out_list.append(inner)
                continue
            limited = _limit_value(inner, depth + 1, counter, bound)
            if limited is not None or inner is None:
                out_list.append(limited)
                size += 1  # pragma: no mutate
        bound[0] += size  # pragma: no mutate
        return out_list
    bound[0] += _scalar_bound(value)  # pragma: no mutate
    return value


def _size(properties: Mapping[str, Any]) -> int:
    return len(json.dumps(properties, separators=(",", ":"), default=str).encode())


def limit_properties(properties: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """Event properties within Klaviyo's limits, and how many things were cut to get there.

    Deterministic and never failing: properties beyond MAX_PROPERTIES are dropped from the end
    (selected raw fields come after the Klaviyo structure), strings are cut at 100 KB, arrays at
    4000 entries, containers deeper than 10 levels are dropped; if the whole is still too large,
    raw fields go first, then Items[] is shortened. (The exact size is measured only when an
    upper bound gathered on the way does not already show the properties are small enough.)
    """
    counter = [0]
    bound = [2.0]  # pragma: no mutate
    keys = list(properties)
    if len(keys) > MAX_PROPERTIES:
        counter[0] += len(keys) - MAX_PROPERTIES
        keys = keys[:MAX_PROPERTIES]
    limited: dict[str, Any] = {}
    for key in keys:
        value = _limit_value(properties[key], 1, counter, bound)
        if value is not None or properties[key] is None:
            limited[key] = value
            bound[0] += _key_bound(key)  # pragma: no mutate
    while bound[0] > MAX_PROPERTIES_BYTES and _size(limited) > MAX_PROPERTIES_BYTES:
        extra = [k for k in limited if k not in GENERATED_KEYS]
        items = limited.get("Items")
        if extra:
            del limited[extra[-1]]
            counter[0] += 1
        elif isinstance(items, list) and items:
            keep = len(items) * 3 // 4
            counter[0] += len(items) - keep
            limited["Items"] = items[:keep]
        else:
            others = [k for k in limited if k != "OrderId"]
            if not others:
                break
            del limited[others[-1]]
            counter[0] += 1
    return limited, counter[0]
