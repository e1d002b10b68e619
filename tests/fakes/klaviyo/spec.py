"""Every request the fake receives, checked against Klaviyo's published OpenAPI document.

`openapi/klaviyo-openapi-2026-07-15.subset.json` is Klaviyo's own `stable.json` for our pinned
revision, cut to the paths a connector can use and unchanged (see `openapi/README.md`). It is the
contract, so the fake refuses what it does not allow, before any API family sees the request:

- path and method: an undeclared path is a 404, an undeclared method a 405;
- headers: the declared header parameters (`revision`, `YYYY-MM-DD[.suffix]`), a body's
  Content-Type one the operation declares (415), an Accept header that admits the declared
  response media type (406);
- query: undeclared parameters are refused; declared ones are checked against their schema
  (`page[size]` bounds, the enums of `fields[…]`, `include`, `sort`, comma lists for
  `explode: false`), and `filter` may use only the field/operator pairs its description allows;
- body: the operation's requestBody schema (JSON Schema draft 4 plus OpenAPI 3.0 `nullable`),
  with formats (RFC 3339 date-time, date, uri) and members the schema does not declare refused:
  the spec never sets `additionalProperties: false`, but Klaviyo refuses attributes it does not
  know, so every object schema that lists its properties is closed (free-form objects such as
  event `properties` or catalog `custom_metadata` list none and stay open);
- prose: limits the document states only in descriptions are compiled into keywords of the
  schema they describe or of the operation: event property counts, string sizes, the event
  `time` range, metric name length, ISO 4217 currencies, E.164 phones, flat `custom_metadata`
  and its size, payload sizes, per-profile sizes and batch sizes ("Accepts up to 1,000 events
  per request"). `_prose_keywords` / `_operation_limits` hold the phrases; a phrase the
  document no longer contains simply stops applying, and tests/test_klaviyo_spec.py pins each.

A refused request is answered as Klaviyo answers: a JSON:API 4XX (declared by every operation
as `ClientError`) whose errors carry `source.pointer` (body) or `source.parameter` (query,
header). Answers are checked the other way (`check_response`): a status the operation does not
declare, or a body that does not match the declared response schema, is a bug of the fake.

Validators are compiled once per operation, on first use, and shared by every fake instance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from tests.fakes.klaviyo.errors import ApiFailure, error_object
from tests.fakes.klaviyo.filters import parse_filter

SPEC_FILE = Path(__file__).parent / "openapi" / "klaviyo-openapi-2026-07-15.subset.json"

KB = 1024
MB = 1024 * KB

# ISO 4217 active codes (the standard's list one, 2026) plus the fund/metal codes it also lists.
ISO_4217 = frozenset(["AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF", "XPD", "XPF", "XPT", "XSU", "XTS", "XUA", "XXX", "YER", "ZAR", "ZMW", "ZWG", "ZWL"])

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

def _prose_keywords(description: str) -> dict[str, Any]:
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
    for path, value in _strings(instance, ()):
        if len(value.encode("utf-8", "surrogatepass")) > limit:
            yield ValidationError(f"A string cannot be larger than {limit // KB} KB.",
                                  path=path)


def _strings(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*path, i))


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
    if instance is not None and len(_dumps(instance)) > limit:
        yield ValidationError(f"May not exceed {limit // KB}kb.")


def _dumps(value: Any) -> bytes:
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


def _draft4(node: Any, strict: bool) -> Any:
    """An OpenAPI 3.0 schema object as draft 4 JSON Schema; `strict` closes objects that list
    their properties and adds the prose keywords (requests); answers are checked without."""
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"$ref": node["$ref"]}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _draft4(s, strict) for name, s in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _draft4(value, strict)
        elif key in ("oneOf", "anyOf", "allOf"):
            out[key] = [_draft4(s, strict) for s in value]
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
        out.update(_prose_keywords(str(node.get("description") or "")))
    return out


# -- operations ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    payload: int | None = None  # bytes of the whole body
    entry: int | None = None  # bytes of each entry of the batch
    batch: int | None = None  # entries (for bulk events: events) per request
    batch_noun: str = ""
    string: int | None = None  # bytes of any string in the body


def _operation_limits(text: str) -> Limits:
    def size(m: re.Match[str] | None) -> int | None:
        return int(m.group(1)) * (MB if m.group(2).upper() == "MB" else KB) if m else None

    batch = re.search(r"Accepts up to ([\d,]+) ([\w ]+?) per request", text)
    count = int(batch.group(1).replace(",", "")) if batch else None
    noun = batch.group(2) if batch else ""
    if m := re.search(r"Maximum number of profiles[^:\n]*: (\d+)", text):
        count, noun = int(m.group(1)), "profiles"
    return Limits(
        payload=size(re.search(r"maximum allowed payload size is (\d+) ?(MB|KB)", text)
                     or re.search(r"event payload must not exceed (\d+) ?(MB|KB)", text)),
        entry=size(re.search(r"maximum allowed payload size per-\w+ is (\d+) ?(MB|KB)", text)),
        batch=count, batch_noun=noun,
        string=size(re.search(r"A single string cannot exceed (\d+) ?(MB|KB)", text)),
    )


_ALLOWED_FILTERS_RE = re.compile(r"`([^`]+)`: ((?:`[\w-]+`(?:, )?)+)")


def _allowed_filters(description: str) -> dict[str, frozenset[str]]:
    _, _, allowed = description.partition("Allowed field(s)/operator(s):")
    return {fld: frozenset(re.findall(r"`([\w-]+)`", ops))
            for fld, ops in _ALLOWED_FILTERS_RE.findall(allowed)}


@dataclass
class Operation:
    method: str
    template: str
    operation_id: str
    regex: re.Pattern[str]
    query: dict[str, dict[str, Any]]
    headers: dict[str, dict[str, Any]]
    body_media: tuple[str, ...]
    body_required: bool
    body_schema: Any
    responses: dict[str, Any]
    limits: Limits
    filters: dict[str, frozenset[str]] | None
    _validator: Any = field(default=None, repr=False)


class Contract:
    """The operations of the document, with their validators compiled on first use."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        schemas = document["components"]["schemas"]
        self._strict = {name: _draft4(s, True) for name, s in schemas.items()}
        self._lenient = {name: _draft4(s, False) for name, s in schemas.items()}
        self._response_validators: dict[tuple[str, str, str], Any] = {}
        self.paths: list[tuple[re.Pattern[str], str, dict[str, Operation]]] = []
        for template, item in document["paths"].items():
            regex = re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template))
                               + "/?$")
            operations = {}
            for method, op in item.items():
                if method == "parameters":
                    continue
                operations[method.upper()] = self._operation(method.upper(), template, regex, op)
            self.paths.append((regex, template, operations))
        # A literal segment wins over a parameter ("/a/b" before "/a/{id}").
        self.paths.sort(key=lambda p: p[1].count("{"))

    def _operation(self, method: str, template: str, regex: re.Pattern[str],
                   op: dict[str, Any]) -> Operation:
        params = op.get("parameters") or []
        body = op.get("requestBody") or {}
        content = body.get("content") or {}
        schema = next(iter(content.values()), {}).get("schema") if content else None
        texts = [op.get("description") or ""]
        if schema is not None:
            texts += _descriptions(self.document, schema, set())
        filter_param = next((p for p in params if p["in"] == "query" and p["name"] == "filter"),
                            None)
        return Operation(
            method=method, template=template, operation_id=op.get("operationId", ""),
            regex=regex,
            query={p["name"]: p for p in params if p["in"] == "query"},
            headers={p["name"].lower(): p for p in params if p["in"] == "header"},
            body_media=tuple(content), body_required=bool(body.get("required")),
            body_schema=schema, responses=op.get("responses") or {},
            limits=_operation_limits("\n".join(texts)),
            filters=_allowed_filters(filter_param.get("description") or "")
            if filter_param else None,
        )

    # -- matching ---------------------------------------------------------------------------------

    def match(self, method: str, raw_path: str) -> Operation:
        for regex, _template, operations in self.paths:
            if regex.match(raw_path):
                if method not in operations:
                    raise ApiFailure(405, [error_object(
                        405, "method_not_allowed", "Method not allowed.",
                        f"Method {method!r} not allowed.")])
                return operations[method]
        raise ApiFailure(404, [error_object(404, "not_found", "Not found.",
                                            "Unknown endpoint.")])

    # -- requests ---------------------------------------------------------------------------------

    def check_request(self, method: str, raw_path: str, query: Any, headers: Mapping[str, str],
                      body: bytes, parsed: Any) -> Operation:
        """The operation the request is for; raises the ApiFailure Klaviyo would answer."""
        op = self.match(method, raw_path)
        self._check_headers(op, headers, body)
        self._check_query(op, query)
        if op.body_schema is not None:
            self._check_body(op, body, parsed)
        elif body:
            raise _pointer("/data", "This endpoint does not take a request body.")
        return op

    @staticmethod
    def _check_headers(op: Operation, headers: Mapping[str, str], body: bytes) -> None:
        for name, param in op.headers.items():
            value = headers.get(name)
            if value is None:
                if param.get("required"):
                    raise _parameter(name, f"The {name} header is required.")
                continue
            if name == "revision" and not REVISION_RE.match(value):
                raise _parameter(name, "A valid revision header (YYYY-MM-DD[.suffix]) is "
                                       "required.")
        if body and op.body_media:
            media = (headers.get("content-type") or "").split(";")[0].strip().lower()
            if media not in op.body_media:
                raise ApiFailure(415, [error_object(
                    415, "unsupported_media_type", "Unsupported media type.",
                    f"Unsupported media type {media or 'none'!r} in request; this endpoint "
                    f"takes {', '.join(op.body_media)}.")])
        accept = headers.get("accept")
        if accept:
            ranges = {r.split(";")[0].strip().lower() for r in accept.split(",")}
            if not ranges & {"*/*", "application/*", "application/vnd.api+json"}:
                raise ApiFailure(406, [error_object(
                    406, "not_acceptable", "Not acceptable.",
                    "This endpoint answers application/vnd.api+json.")])

    @staticmethod
    def _check_query(op: Operation, query: Any) -> None:
        for name in query:
            param = op.query.get(name)
            if param is None:
                raise _parameter(name, f"{name!r} is not a valid query parameter here.")
            values = query.getlist(name) if hasattr(query, "getlist") else [query[name]]
            if len(values) > 1:
                raise _parameter(name, f"{name!r} may be given once.")
            _check_parameter(param, values[0])
            if name == "filter" and op.filters is not None:
                for operator, fld, _value in parse_filter(values[0]):
                    if operator not in op.filters.get(fld, ()):
                        raise _parameter("filter", f"Filter {operator}({fld}) is not allowed "
                                                   "on this endpoint.")
        for name, param in op.query.items():
            if param.get("required") and name not in query:
                raise _parameter(name, f"{name!r} is required.")

    def _check_body(self, op: Operation, body: bytes, parsed: Any) -> None:
        limits = op.limits
        if not body:
            if op.body_required:
                raise _pointer("/data", "A request body is required.")
            return
        if limits.payload is not None and len(body) > limits.payload:
            raise _pointer("/data", f"The maximum allowed payload size is "
                                    f"{limits.payload // MB} MB.", code="payload_too_large")
        if op._validator is None:
            op._validator = StrictValidator(
                {"$ref": "#/x-body", "components": {"schemas": self._strict},
                 "x-body": _inlined(_draft4(op.body_schema, True), self._strict, ())},
                format_checker=BULK_IMPORT_FORMATS if op.operation_id == "bulk_import_profiles"
                else FORMATS)
        errors = sorted(op._validator.iter_errors(parsed),
                        key=lambda e: (list(map(str, e.absolute_path)), str(e.message)))
        if errors:
            raise ApiFailure(400, [_schema_error(e) for e in _leaves(errors)[:10]])
        if limits.string is not None:
            for path, value in _strings(parsed, ()):
                if len(value.encode("utf-8", "surrogatepass")) > limits.string:
                    raise _pointer(_json_pointer(path), f"A single string cannot exceed "
                                                        f"{limits.string // KB}KB.")
        if limits.batch is not None or limits.entry is not None:
            self._check_batch(limits, parsed)

    @staticmethod
    def _check_batch(limits: Limits, parsed: Any) -> None:
        attributes = ((parsed or {}).get("data") or {}).get("attributes") or {}
        lists = [(key, value["data"]) for key, value in attributes.items()
                 if isinstance(value, dict) and isinstance(value.get("data"), list)]
        if not lists:
            return
        key, entries = lists[0]
        pointer = f"/data/attributes/{key}/data"
        count = len(entries)
        if limits.batch_noun == "events" and key != "events":  # bulk: events of all profiles
            count = sum(len((((e.get("attributes") or {}).get("events") or {}).get("data"))
                            or []) for e in entries)
        if limits.batch is not None and count > limits.batch:
            raise _pointer(pointer, f"Accepts up to {limits.batch:,} {limits.batch_noun} per "
                                    f"request; got {count:,}.")
        if limits.entry is not None:
            for i, entry in enumerate(entries):
                if len(_dumps(entry)) > limits.entry:
                    raise _pointer(f"{pointer}/{i}", f"The maximum allowed payload size per "
                                                     f"entry is {limits.entry // KB}KB.")

    # -- answers ----------------------------------------------------------------------------------

    def check_response(self, op: Operation, status: int, body: Any) -> list[str]:
        """What is wrong with an answer of the fake by the document (empty: nothing)."""
        declared = op.responses.get(str(status)) or op.responses.get(f"{status // 100}XX") \
            or op.responses.get("default")
        where = f"{op.method} {op.template} → {status}"
        if declared is None:
            return [f"{where}: status not declared ({', '.join(op.responses)})"]
        if "$ref" in declared:
            declared = self._resolve(declared["$ref"])
        content = declared.get("content") or {}
        if not content:
            return [] if body is None else [f"{where}: declared without a body, answered one"]
        if body is None:
            return [f"{where}: declared with a body, answered none"]
        spec = next(iter(content.values()))
        key = (op.method, op.template, str(status))
        validator = self._response_validators.get(key)
        if validator is None:
            validator = self._response_validators[key] = Draft4Validator(
                {"$ref": "#/x-body", "components": {"schemas": self._lenient},
                 "x-body": _inlined(_draft4(spec.get("schema") or {}, False), self._lenient,
                                    ())})
        return [f"{where}: {_json_pointer(e.absolute_path) or '/'}: {e.message[:300]}"
                for e in list(validator.iter_errors(body))[:5]]

    def _resolve(self, ref: str) -> Any:
        node: Any = self.document
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node


def _inlined(schema: Any, schemas: dict[str, Any], seen: tuple[str, ...]) -> Any:
    """The schema with its `#/components/schemas/…` references replaced by what they name
    (a reference back into itself stays one): resolving references is most of a check's cost."""
    if isinstance(schema, list):
        return [_inlined(s, schemas, seen) for s in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        return schema if name in seen else _inlined(schemas[name], schemas, (*seen, name))
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {n: _inlined(s, schemas, seen) for n, s in value.items()}
        elif key in ("items", "additionalProperties", "not", "oneOf", "anyOf", "allOf"):
            out[key] = _inlined(value, schemas, seen)
        else:
            out[key] = value
    return out


def _descriptions(document: dict[str, Any], schema: Any, seen: set[str]) -> list[str]:
    """Every description reachable from a schema (following $refs once)."""
    found: list[str] = []
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if ref is not None:
            if ref not in seen:
                seen.add(ref)
                node: Any = document
                for part in ref.lstrip("#/").split("/"):
                    node = node[part]
                found += _descriptions(document, node, seen)
            return found
        if isinstance(schema.get("description"), str):
            found.append(schema["description"])
        for key in ("properties",):
            for sub in (schema.get(key) or {}).values():
                found += _descriptions(document, sub, seen)
        for key in ("items", "additionalProperties", "not"):
            found += _descriptions(document, schema.get(key), seen)
        for key in ("oneOf", "anyOf", "allOf"):
            for sub in schema.get(key) or []:
                found += _descriptions(document, sub, seen)
    return found


def _check_parameter(param: dict[str, Any], raw: str) -> None:
    name, schema = param["name"], param.get("schema") or {}
    kind = schema.get("type")
    if kind == "integer":
        try:
            value = int(raw)
        except ValueError:
            raise _parameter(name, f"{name} must be an integer.") from None
        if "minimum" in schema and value < schema["minimum"] or (
                "maximum" in schema and value > schema["maximum"]):
            raise _parameter(name, f"{name} must be between {schema.get('minimum')} and "
                                   f"{schema.get('maximum')}.")
    elif kind == "array":
        items = schema.get("items") or {}
        for value in raw.split(",") if param.get("explode") is False else [raw]:
            if "enum" in items and value not in items["enum"]:
                raise _parameter(name, f"{value!r} is not a valid value for {name}.")
    elif "enum" in schema and raw not in schema["enum"]:
        raise _parameter(name, f"{raw!r} is not a valid value for {name}.")


def _leaves(errors: list[ValidationError]) -> list[ValidationError]:
    """For a oneOf that no branch matches, the errors of the branch that came closest."""
    out = []
    for error in errors:
        if error.validator in ("oneOf", "anyOf") and error.context:
            best = jsonschema.exceptions.best_match(error.context)
            out.append(best if best is not None else error)
        else:
            out.append(error)
    return out


def _schema_error(error: ValidationError) -> dict[str, Any]:
    path = list(error.absolute_path)
    instance = error.instance
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        declared = set((error.schema or {}).get("properties") or {})
        extra = sorted(k for k in instance if k not in declared)
        if extra:
            path.append(extra[0])
            return error_object(400, "invalid", "Invalid input.",
                                f"'{extra[0]}' is not a valid field for this resource.",
                                pointer=_json_pointer(path))
    if error.validator == "required" and isinstance(instance, dict):
        missing = [k for k in error.validator_value if k not in instance]
        if missing:
            path.append(missing[0])
            return error_object(400, "invalid", "Invalid input.",
                                f"'{missing[0]}' is a required field.",
                                pointer=_json_pointer(path))
    return error_object(400, "invalid", "Invalid input.", error.message[:500],
                        pointer=_json_pointer(path) or "/data")


def _json_pointer(path: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _pointer(pointer: str, detail: str, code: str = "invalid") -> ApiFailure:
    return ApiFailure(400, [error_object(400, code, "Invalid input.", detail, pointer=pointer)])


def _parameter(name: str, detail: str) -> ApiFailure:
    return ApiFailure(400, [error_object(400, "invalid", "Invalid input.", detail,
                                         parameter=name)])


@cache
def contract() -> Contract:
    """The document's contract, loaded once per process."""
    return Contract(json.loads(SPEC_FILE.read_text(encoding="utf-8")))


__all__ = ["ISO_4217", "SPEC_FILE", "Contract", "Limits", "Operation", "contract"]
