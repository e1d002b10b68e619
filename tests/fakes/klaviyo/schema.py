"""Klaviyo's OpenAPI 3.0 schemas as JSON Schema draft 4 validators, strict as Klaviyo is.

`draft4()` converts a schema object: `nullable` becomes a `null` type, and for requests
(`strict`) every object schema that lists its properties is closed (`additionalProperties:
false`: the document never says so, but Klaviyo refuses members it does not know) and the limits
its description states in words become keywords (`prose_keywords`): property counts, string
sizes, the event `time` range, name lengths, ISO 4217 currencies, E.164 phones, flat
`custom_metadata` and its size. `StrictValidator` knows those keywords, `FORMATS` the formats
(RFC 3339 date-time, date, uri, e164, iso4217). `inlined()` replaces component references by
what they name, so a check does not resolve references.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import jsonschema
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError

KB = 1024
MB = 1024 * KB

# ISO 4217 active codes (the standard's list one, 2026) plus the fund/metal codes it also lists.
ISO_4217 = frozenset({
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR",
    "XOF", "XPD", "XPF", "XPT", "XSU", "XTS", "XUA", "XXX", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
})

RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]*$")
REVISION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")

FORMATS = FormatChecker(())
# Profile bulk import: Klaviyo reports a profile's invalid phone number as an import error of
# that profile (the job's import-errors), not as a refusal of the request.
BULK_IMPORT_FORMATS = FormatChecker(())


@FORMATS.checks("date-time")
@BULK_IMPORT_FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return bool(RFC3339_RE.match(value)) and _parse_time(value) is not None


@FORMATS.checks("date")
@BULK_IMPORT_FORMATS.checks("date")
def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


@FORMATS.checks("uri")
@BULK_IMPORT_FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or bool(URI_RE.match(value))


@FORMATS.checks("e164")
def _is_e164(value: object) -> bool:
    return not isinstance(value, str) or bool(E164_RE.match(value))


@FORMATS.checks("iso4217")
@BULK_IMPORT_FORMATS.checks("iso4217")
def _is_currency(value: object) -> bool:
    return not isinstance(value, str) or value in ISO_4217


def _parse_time(value: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# -- prose → keywords ------------------------------------------------------------------------------

def prose_keywords(description: str) -> dict[str, Any]:
    """Limits a schema's description states in words, as (custom) JSON Schema keywords."""
    found: dict[str, Any] = {}
    if m := re.search(r"must not exceed (\d+) properties", description):
        found["maxProperties"] = int(m.group(1))
    if m := re.search(r"each string cannot be larger than (\d+) ?KB", description):
        found["x-max-string-bytes"] = int(m.group(1)) * KB
    if m := re.search(r"must be after the year (\d{4}) and can only\s+be up to (\d+) years? in "
                      r"the future", description):
        found["x-time-range"] = [int(m.group(1)), int(m.group(2))]
    if m := re.search(r"Must be less than (\d+) characters", description):
        found["maxLength"] = int(m.group(1)) - 1
    if "ISO 4217" in description:
        found["format"] = "iso4217"
    if "E.164" in description:
        found["format"] = "e164"
    if description.startswith("Flat JSON blob"):
        found["x-flat"] = True
    if m := re.search(r"May not exceed (\d+) ?kb", description, re.IGNORECASE):
        found["x-max-json-bytes"] = int(m.group(1)) * KB
    return found


def _x_max_string_bytes(validator: Any, limit: int, instance: Any, schema: Any
                        ) -> Iterator[ValidationError]:
    for path, value in strings(instance, ()):
        if len(value.encode("utf-8", "surrogatepass")) > limit:
            yield ValidationError(f"A string cannot be larger than {limit // KB} KB.",
                                  path=path)


def strings(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings(item, (*path, i))


def _x_time_range(validator: Any, bounds: list[int], instance: Any, schema: Any
                  ) -> Iterator[ValidationError]:
    if not isinstance(instance, str):
        return
    when = _parse_time(instance)
    if when is None:
        return  # `format` reports it
    after, years = bounds
    latest = datetime.now(UTC) + timedelta(days=365 * years)
    if when <= datetime(after, 1, 1, tzinfo=UTC) or when > latest:
        yield ValidationError(f"The time must be after the year {after} and can only be up to "
                              f"{years} year in the future.")


def _x_flat(validator: Any, flat: bool, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if flat and isinstance(instance, dict):
        for key, value in instance.items():
            if isinstance(value, dict) or (isinstance(value, list) and any(
                    isinstance(v, (dict, list)) for v in value)):
                yield ValidationError("custom_metadata must be a flat JSON object.", path=(key,))


def _x_max_json_bytes(validator: Any, limit: int, instance: Any, schema: Any
                      ) -> Iterator[ValidationError]:
    if instance is not None and len(dumps(instance)) > limit:
        yield ValidationError(f"May not exceed {limit // KB}kb.")


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass")


StrictValidator = jsonschema.validators.extend(Draft4Validator, {
    "x-max-string-bytes": _x_max_string_bytes,
    "x-time-range": _x_time_range,
    "x-flat": _x_flat,
    "x-max-json-bytes": _x_max_json_bytes,
})


# -- OpenAPI 3.0 schema → draft 4 ------------------------------------------------------------------

_DROPPED = frozenset({"nullable", "example", "readOnly", "writeOnly", "deprecated", "discriminator",
                      "xml", "externalDocs"})


def draft4(node: Any, strict: bool) -> Any:
    """An OpenAPI 3.0 schema object as draft 4 JSON Schema; `strict` closes objects that list
    their properties and adds the prose keywords (requests); answers are checked without."""
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"$ref": node["$ref"]}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: draft4(s, strict) for name, s in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = draft4(value, strict)
        elif key in ("oneOf", "anyOf", "allOf"):
            out[key] = [draft4(s, strict) for s in value]
        elif key not in _DROPPED and not key.startswith("x-"):
            out[key] = value
    if node.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        for key in ("oneOf", "anyOf"):
            if key in out:
                out[key] = [*out[key], {"type": "null"}]
    if strict:
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        out.update(prose_keywords(str(node.get("description") or "")))
    return out


def inlined(schema: Any, schemas: dict[str, Any], seen: tuple[str, ...]) -> Any:
    """The schema with its `#/components/schemas/…` references replaced by what they name
    (a reference back into itself stays one): resolving references is most of a check's cost."""
    if isinstance(schema, list):
        return [inlined(s, schemas, seen) for s in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        return schema if name in seen else inlined(schemas[name], schemas, (*seen, name))
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {n: inlined(s, schemas, seen) for n, s in value.items()}
        elif key in ("items", "additionalProperties", "not", "oneOf", "anyOf", "allOf"):
            out[key] = inlined(value, schemas, seen)
        else:
            out[key] = value
    return out


# -- the fast path ---------------------------------------------------------------------------------
# The same schema compiled by jsonschema-rs answers "valid?" in a fraction of the time (a 10,000
# profile import is checked in milliseconds, not a second); only a request it finds invalid is
# checked again by `StrictValidator`, whose errors carry the pointers Klaviyo answers with.

def _rs_keyword(check: Any) -> type:
    class Keyword:
        def __init__(self, parent_schema: Any, value: Any, schema_path: Any) -> None:
            self.value = value

        def validate(self, instance: Any) -> None:
            for error in check(None, self.value, instance, None):
                raise ValueError(error.message)

    return Keyword


_RS_KEYWORDS = {name: _rs_keyword(check) for name, check in StrictValidator.VALIDATORS.items()
                if name.startswith("x-")}


def fast_validator(schema: Any, formats: FormatChecker | None) -> Any:
    """A jsonschema-rs validator of `schema` (references inlined) with the same keywords and
    formats as `StrictValidator`, for `is_valid` only."""
    import jsonschema_rs

    checks = {name: (lambda value, fn=fn: bool(fn(value)))
              for name, (fn, _raises) in (formats.checkers.items() if formats else ())}
    return jsonschema_rs.Draft4Validator(schema, formats=checks, validate_formats=bool(formats),
                                         keywords=_RS_KEYWORDS if formats else None)
