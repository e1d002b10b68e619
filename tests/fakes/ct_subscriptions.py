"""The Subscriptions endpoints of the commercetools fake (tests/fakes/commercetools.py routes here).

  GET    /{projectKey}/subscriptions/key={key}             404 ResourceNotFound when missing
  GET    /{projectKey}/subscriptions                       all of them (no predicates)
  POST   /{projectKey}/subscriptions                       SubscriptionDraft → 201
  POST   /{projectKey}/subscriptions/key={key}             {version, actions} → 200
  DELETE /{projectKey}/subscriptions/key={key}?version=N   → 200 (the deleted subscription)

Strict like the rest of the fake: resource type ids and update actions are the SDK's own enums
and action names; an unknown one, a missing destination field, a duplicate key, a subscription
without messages and changes, or a missing `version` is a 400; a stale version a 409
ConcurrentModification. Update actions: setMessages, setChanges, changeDestination, setKey (there
is none for the format, as in commercetools).
"""

from __future__ import annotations

import copy
import json
import urllib.parse
import uuid
from datetime import UTC, datetime
from typing import Any

from commercetools.platform.models.subscription import (
    ChangeSubscriptionResourceTypeId,
    MessageSubscriptionResourceTypeId,
)
from werkzeug.wrappers import Request, Response

MESSAGE_TYPES = {e.value for e in MessageSubscriptionResourceTypeId}
CHANGE_TYPES = {e.value for e in ChangeSubscriptionResourceTypeId}
DESTINATION_FIELDS = {
    "GoogleCloudPubSub": ("projectId", "topic"),
    "SQS": ("queueUrl", "region"),
    "SNS": ("topicArn",),
    "EventBridge": ("region", "accountId"),
    "AzureServiceBus": ("connectionString",),
    "EventGrid": ("uri", "accessKey"),
    "ConfluentCloud": ("bootstrapServer", "apiKey", "apiSecret", "topic"),
}


class _Invalid(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.extra = status, code, extra


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status,
                    content_type="application/json")


def _store(fake: Any) -> dict[str, dict[str, Any]]:
    """id → subscription, kept on the fake and emptied by its reset()."""
    if not hasattr(fake, "_subscriptions"):
        fake._subscriptions = {}
    return fake._subscriptions


def stored(fake: Any) -> dict[str, dict[str, Any]]:
    """key → subscription (copies), for assertions."""
    with fake._lock:
        return {s.get("key") or s["id"]: copy.deepcopy(s) for s in _store(fake).values()}


def seed(fake: Any, draft: dict[str, Any]) -> dict[str, Any]:
    """Store a subscription directly (e.g. one in a format the connector does not use)."""
    with fake._lock:
        return copy.deepcopy(_create(fake, draft))


def handle(fake: Any, req: Request, rest: list[str]) -> Response:
    try:
        with fake._lock:
            return _route(fake, req, rest)
    except _Invalid as exc:
        body = {"statusCode": exc.status, "message": str(exc),
                "errors": [{"code": exc.code, "message": str(exc), **exc.extra}]}
        return _json(exc.status, body)


def _route(fake: Any, req: Request, rest: list[str]) -> Response:
    if not rest:
        if req.method == "GET":
            results = [copy.deepcopy(s) for s in _store(fake).values()]
            return _json(200, {"limit": 20, "offset": 0, "count": len(results),
                               "total": len(results), "results": results})
        if req.method == "POST":
            return _json(201, copy.deepcopy(_create(fake, _body(req))))
        raise _Invalid(405, "MethodNotAllowed", f"{req.method} not allowed")
    if len(rest) != 1 or not rest[0].startswith("key="):
        raise _Invalid(404, "ResourceNotFound", "the fake serves subscriptions by key only")
    key = urllib.parse.unquote(rest[0][len("key="):])
    current = _by_key(fake, key)
    if current is None:
        raise _Invalid(404, "ResourceNotFound", f"The Resource with key '{key}' was not found.")
    if req.method == "GET":
        return _json(200, copy.deepcopy(current))
    if req.method == "POST":
        body = _body(req)
        _check_version(current, body.get("version"))
        return _json(200, copy.deepcopy(_update(fake, current, body.get("actions"))))
    if req.method == "DELETE":
        raw = req.args.get("version")
        if raw is None or not raw.isdigit():
            raise _Invalid(400, "InvalidInput", "the query parameter 'version' is required")
        _check_version(current, int(raw))
        del _store(fake)[current["id"]]
        return _json(200, copy.deepcopy(current))
    raise _Invalid(405, "MethodNotAllowed", f"{req.method} not allowed")


def _body(req: Request) -> dict[str, Any]:
    try:
        body = json.loads(req.get_data() or b"null")
    except ValueError:
        raise _Invalid(400, "InvalidJsonInput",
                       "Request body does not contain valid JSON.") from None
    if not isinstance(body, dict):
        raise _Invalid(400, "InvalidJsonInput", "Request body must be a JSON object.")
    return body


def _by_key(fake: Any, key: str) -> dict[str, Any] | None:
    return next((s for s in _store(fake).values() if s.get("key") == key), None)


def _check_version(current: dict[str, Any], version: Any) -> None:
    if not isinstance(version, int) or isinstance(version, bool):
        raise _Invalid(400, "InvalidJsonInput", "'version' must be an integer")
    if version != current["version"]:
        raise _Invalid(409, "ConcurrentModification",
                       f"Object {current['id']} has a different version than expected. "
                       f"Expected: {version} - Actual: {current['version']}.",
                       currentVersion=current["version"])


def _messages(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Invalid(400, "InvalidJsonInput", "'messages' must be an array")
    result = []
    for item in value:
        if not isinstance(item, dict) or item.get("resourceTypeId") not in MESSAGE_TYPES:
            raise _Invalid(400, "InvalidInput", f"unsupported message resourceTypeId in {item!r}")
        types = item.get("types")
        if types is not None and (not isinstance(types, list)
                                  or not all(isinstance(t, str) and t for t in types)):
            raise _Invalid(400, "InvalidJsonInput", "'types' must be an array of message types")
        result.append({k: item[k] for k in ("resourceTypeId", "types") if k in item})
    return result


def _changes(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Invalid(400, "InvalidJsonInput", "'changes' must be an array")
    for item in value:
        if not isinstance(item, dict) or item.get("resourceTypeId") not in CHANGE_TYPES:
            raise _Invalid(400, "InvalidInput", f"unsupported change resourceTypeId in {item!r}")
    return [{"resourceTypeId": item["resourceTypeId"]} for item in value]


def _destination(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") not in DESTINATION_FIELDS:
        raise _Invalid(400, "InvalidJsonInput", f"unsupported destination {value!r}")
    missing = [f for f in DESTINATION_FIELDS[value["type"]] if not value.get(f)]
    if missing:
        raise _Invalid(400, "InvalidJsonInput", f"destination: missing {', '.join(missing)}")
    return dict(value)


def _format(value: Any) -> dict[str, Any]:
    if value is None:
        return {"type": "Platform"}
    if value == {"type": "Platform"}:
        return dict(value)
    if isinstance(value, dict) and value.get("type") == "CloudEvents" and value.get(
            "cloudEventsVersion") == "1.0":
        return dict(value)
    raise _Invalid(400, "InvalidJsonInput", f"unsupported format {value!r}")


def _require_some(subscription: dict[str, Any]) -> None:
    if not subscription["messages"] and not subscription["changes"]:
        raise _Invalid(400, "InvalidOperation", "Either messages or changes must be set.")


def _create(fake: Any, draft: dict[str, Any]) -> dict[str, Any]:
    key = draft.get("key")
    if key is not None and _by_key(fake, key) is not None:
        raise _Invalid(400, "DuplicateField",
                       f"A duplicate value '\"{key}\"' exists for field 'key'.",
                       field="key", duplicateValue=key)
    now = _now()
    subscription = {
        "id": str(uuid.uuid4()), "version": 1, "createdAt": now, "lastModifiedAt": now,
        **({"key": key} if key is not None else {}),
        "destination": _destination(draft.get("destination")),
        "messages": _messages(draft.get("messages")),
        "changes": _changes(draft.get("changes")),
        "format": _format(draft.get("format")),
        "status": "Healthy",
    }
    _require_some(subscription)
    _store(fake)[subscription["id"]] = subscription
    return subscription


def _update(fake: Any, current: dict[str, Any], actions: Any) -> dict[str, Any]:
    if not isinstance(actions, list) or not actions:
        raise _Invalid(400, "InvalidJsonInput", "'actions' must be a non-empty array")
    updated = copy.deepcopy(current)
    for action in actions:
        name = action.get("action") if isinstance(action, dict) else None
        if name == "setMessages":
            updated["messages"] = _messages(action.get("messages"))
        elif name == "setChanges":
            updated["changes"] = _changes(action.get("changes"))
        elif name == "changeDestination":
            updated["destination"] = _destination(action.get("destination"))
        elif name == "setKey":
            if action.get("key") is None:
                updated.pop("key", None)
            else:
                updated["key"] = action["key"]
        else:
            raise _Invalid(400, "InvalidJsonInput", f"unknown update action {name!r}")
    _require_some(updated)
    updated["version"] += 1
    updated["lastModifiedAt"] = _now()
    _store(fake)[updated["id"]] = updated
    return updated
