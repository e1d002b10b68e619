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
  per request"). `schema.prose_keywords` / `_operation_limits` hold the phrases; a phrase the
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from tests.fakes.klaviyo.errors import ApiFailure, error_object
from tests.fakes.klaviyo.filters import parse_filter
from tests.fakes.klaviyo.schema import (
    BULK_IMPORT_FORMATS,
    FORMATS,
    ISO_4217,
    KB,
    MB,
    REVISION_RE,
    StrictValidator,
    draft4,
    dumps,
    fast_validator,
    inlined,
    strings,
)

SPEC_FILE = Path(__file__).parent / "openapi" / "klaviyo-openapi-2026-07-15.subset.json"

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
    _fast: Any = field(default=None, repr=False)


class Contract:
    """The operations of the document, with their validators compiled on first use."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        schemas = document["components"]["schemas"]
        self._strict = {name: draft4(s, True) for name, s in schemas.items()}
        self._lenient = {name: draft4(s, False) for name, s in schemas.items()}
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
        first: dict[str, Any] = next(iter(content.values()), {})
        schema = first.get("schema") if content else None
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
            formats = BULK_IMPORT_FORMATS if op.operation_id == "bulk_import_profiles" \
                else FORMATS
            schema = inlined(draft4(op.body_schema, True), self._strict, ())
            op._validator = StrictValidator(
                {"$ref": "#/x-body", "components": {"schemas": self._strict}, "x-body": schema},
                format_checker=formats)
            op._fast = fast_validator(schema, formats)
        if not op._fast.is_valid(parsed):
            errors = sorted(op._validator.iter_errors(parsed),
                            key=lambda e: (list(map(str, e.absolute_path)), str(e.message)))
            if not errors:  # the two validators disagree: a bug of the fake, not of the request
                raise RuntimeError(f"jsonschema-rs refuses what jsonschema admits on "
                                   f"{op.method} {op.template}")
            raise ApiFailure(400, [_schema_error(e) for e in _leaves(errors)[:10]])
        if limits.string is not None:
            for path, value in strings(parsed, ()):
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
                if len(dumps(entry)) > limits.entry:
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
        validators = self._response_validators.get(key)
        if validators is None:
            schema = inlined(draft4(spec.get("schema") or {}, False), self._lenient, ())
            validators = self._response_validators[key] = (fast_validator(schema, None), (
                Draft4Validator({"$ref": "#/x-body", "x-body": schema,
                                 "components": {"schemas": self._lenient}})))
        if validators[0].is_valid(body):
            return []
        return [f"{where}: {_json_pointer(e.absolute_path) or '/'}: {e.message[:300]}"
                for e in list(validators[1].iter_errors(body))[:5]] or [
                    f"{where}: jsonschema-rs refuses what jsonschema admits"]

    def _resolve(self, ref: str) -> Any:
        node: Any = self.document
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node


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
        for entry in raw.split(",") if param.get("explode") is False else [raw]:
            if "enum" in items and entry not in items["enum"]:
                raise _parameter(name, f"{entry!r} is not a valid value for {name}.")
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
