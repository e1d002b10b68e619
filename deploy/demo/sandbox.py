"""The local stand-ins of `make run`'s demo and preview mode, mounted on the one local port.

- `/sandbox/commercetools/...`: the commercetools fake of the test suite (tests/fakes/
  commercetools.py) holding the demo shop (deploy/demo/shop.py); demo mode only.
- the Klaviyo **preview sink**, the test suite's Klaviyo fake (tests.fakes.klaviyo) on a loopback
  port of its own (its answers link to where it listens), also shown at `/sandbox/klaviyo/...`:
  it records every request and answers as Klaviyo would, so the connector runs exactly as
  against a real account, and nothing leaves the machine.
- `GET /_demo/preview[?since=N]`: what the sink holds (profiles, events by metric, catalog items,
  variants, categories), each with the request fragments that wrote it (`since`: only
  `{"unchanged": true}` while the sink still holds N requests).
- `POST /_demo/change[?kind=customer|order|product]`: change the sandbox shop and deliver the
  subscription message commercetools would send, as a Pub/Sub CloudEvent to `/realtime`.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from deploy.demo import shop

PREVIEW_API_KEY = "pk_preview_sink"
CATALOG_PREFIX = "$custom:::$default:::"
CHANGES = ("customer", "order", "product")
WSGIApp = Callable[..., Any]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Mounted:
    """Serve `app` under `prefix`, as if at the root (the Klaviyo fake reads the raw URI)."""

    def __init__(self, app: WSGIApp, prefix: str) -> None:
        self.app, self.prefix = app, prefix

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        for name in ("RAW_URI", "REQUEST_URI"):
            value = environ.get(name)
            if value and value.startswith(self.prefix):
                environ[name] = value[len(self.prefix):] or "/"
        return self.app(environ, start_response)


class Unmounted:
    """Serve `app` with its mount prefix kept in the path (commercetools' token endpoint is
    `{auth_url}/oauth/token` at the root of the local port)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ["PATH_INFO"] = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        environ["SCRIPT_NAME"] = ""
        return self.app(environ, start_response)


class Sandbox:
    """The fakes of one local run and the routes that show and change them."""

    def __init__(self, *, mode: str, base_url: str, with_shop: bool) -> None:
        from tests.fakes.klaviyo import FakeKlaviyo

        self.mode = mode
        self.base_url = base_url
        # Started on a loopback port of its own: its answers carry absolute links (bulk job
        # URLs, `links.next`) to where it listens, so the connector talks to it there.
        self.klaviyo = FakeKlaviyo(api_key=PREVIEW_API_KEY).start()
        self.klaviyo.job_status_sequence = []  # bulk jobs complete at once: a snappy demo
        self.ct: Any = None
        self.shop_counts: dict[str, int] = {}
        if with_shop:
            from tests.fakes.commercetools import FakeCommercetools

            self.ct = FakeCommercetools(project_key=shop.PROJECT_KEY)
            self.shop_counts = shop.load(self.ct)
        self.realtime: WSGIApp | None = None  # set by deploy.local once the function is built
        self._changes = itertools.count()
        self._lock = threading.Lock()

    # -- settings the connector runs with -------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = {"KLAVIYO_API_KEY": PREVIEW_API_KEY,
               "KLAVIYO_BASE_URL": self.klaviyo.url}
        if self.ct is not None:
            ct_url = f"{self.base_url}/sandbox/commercetools"
            env.update(CTP_PROJECT_KEY=self.ct.project_key, CTP_CLIENT_ID=self.ct.client_id,
                       CTP_CLIENT_SECRET=self.ct.client_secret, CTP_API_URL=ct_url,
                       CTP_AUTH_URL=self.base_url, CTP_SCOPES=" ".join(self.ct.scopes),
                       PRODUCT_URL_TEMPLATE="https://demo-shop.example.com/p/{slug}")
        return env

    def close(self) -> None:
        self.klaviyo.stop()

    def mounts(self) -> dict[str, WSGIApp]:
        mounts: dict[str, WSGIApp] = {
            "/sandbox/klaviyo": Mounted(self.klaviyo, "/sandbox/klaviyo"),
            "/_demo": self._demo_routes,
        }
        if self.ct is not None:
            mounts["/sandbox/commercetools"] = self.ct
            mounts["/oauth"] = Unmounted(self.ct)
        return mounts

    # -- /_demo ---------------------------------------------------------------------------------

    def _demo_routes(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path == "/preview" and request.method == "GET":
            since = request.args.get("since")
            count = len(self.klaviyo.requests)
            if since is not None and since == str(count):  # the console polls: answer cheaply
                response = _json(200, {"mode": self.mode, "requestCount": count,
                                       "unchanged": True})
            else:
                response = _json(200, self.preview())
        elif request.path == "/change" and request.method == "POST":
            if self.ct is None:
                response = _json(404, {"error": "not_found",
                                       "message": "preview mode reads your real project"})
            else:
                response = _json(200, self.change(request.args.get("kind")))
        else:
            response = _json(404, {"error": "not_found", "message": "unknown path"})
        return response(environ, start_response)

    def preview(self) -> dict[str, Any]:
        fake = self.klaviyo
        with fake._lock:
            requests = [r for r in fake.requests if r.method in ("POST", "PATCH", "DELETE")]
            profiles = [dict(p) for p in fake.profiles.values()]
            events = [dict(e) for e in fake.events]
            catalog = {kind: [dict(o) for o in getattr(fake, kind).values()]
                       for kind in ("items", "variants", "categories")}
            request_count = len(fake.requests)
        index = _index(requests)
        for profile in profiles:
            attrs = profile.get("attributes") or {}
            keys = [("external_id", attrs.get("external_id")), ("email", attrs.get("email")),
                    ("id", profile.get("id"))]
            profile["requests"] = _first(index, keys)
        by_metric: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            email = ((fake.profiles.get(event.get("profile_id") or "") or {}).get("attributes")
                     or {}).get("email")
            record = {"id": event.get("id"), "unique_id": event.get("unique_id"),
                      "time": event.get("time"), "value": event.get("value"),
                      "value_currency": event.get("value_currency"), "profile": email,
                      "requests": _first(index, [("unique_id", event.get("unique_id"))])}
            by_metric.setdefault(str(event.get("metric")), []).append(record)
        for objects in catalog.values():
            for obj in objects:
                obj["requests"] = _first(index, [("catalog", obj.get("id"))])
        return {"mode": self.mode, "requestCount": request_count,
                "profiles": profiles, "events": by_metric, "eventCount": len(events),
                **catalog}

    def change(self, kind: str | None = None) -> dict[str, Any]:
        """Change the shop like a merchant would, then deliver commercetools' message."""
        with self._lock:
            n = next(self._changes)
        kind = kind if kind in CHANGES else CHANGES[n % len(CHANGES)]
        assert self.ct is not None
        if kind == "customer":
            doc = self.ct.get("customers", shop.doc_id("customer", n % shop.CUSTOMERS))
            doc["firstName"] = doc["firstName"].split(" (")[0] + f" ({n + 1})"
            message_type, payload = "CustomerFirstNameSet", {"firstName": doc["firstName"]}
            description = f"customer {doc['id']} renamed"
            resource = "customers"
        elif kind == "order":
            order, payment = shop.order(shop.ORDERS + n)
            order.update(orderState="Open", shipmentState="Pending", createdAt=_now(),
                         lastModifiedAt=_now())
            self.ct.add("payments", payment)
            doc, resource = order, "orders"
            message_type, payload = "OrderCreated", {"order": order}
            description = f"order {order['orderNumber']} placed"
        else:
            doc = self.ct.get("products", shop.doc_id("product", shop.PRODUCTS[
                n % len(shop.PRODUCTS)][0]))
            for data in (doc["masterData"]["current"], doc["masterData"]["staged"]):
                for variant in [data["masterVariant"], *data["variants"]]:
                    for price in variant["prices"]:
                        price["value"]["centAmount"] += 100
            message_type, payload = "ProductPublished", {"scope": "All", "removedImageUrls": []}
            description = f"product {doc['key']} repriced (+1.00) and published"
            resource = "products"
        doc["version"] = int(doc.get("version", 1)) + 1
        doc["lastModifiedAt"] = _now()
        stored = self.ct.add(resource, doc)
        type_id = {"customers": "customer", "orders": "order", "products": "product"}[resource]
        if message_type == "ProductPublished":
            payload["productProjection"] = self.ct.get("product-projections", stored["id"])
        delivery = {
            "notificationType": "Message", "projectKey": self.ct.project_key,
            "id": str(uuid.uuid4()), "version": 1, "sequenceNumber": stored["version"],
            "resource": {"typeId": type_id, "id": stored["id"]},
            "resourceVersion": stored["version"], "resourceUserProvidedIdentifiers": {},
            "type": message_type, "createdAt": _now(), "lastModifiedAt": _now(), **payload,
        }
        status = self.deliver(delivery)
        return {"kind": kind, "description": description, "message": message_type,
                "resourceId": stored["id"], "realtimeStatus": status}

    def deliver(self, delivery: dict[str, Any]) -> int:
        """POST the delivery to the realtime function as a Pub/Sub CloudEvent (binary mode)."""
        if self.realtime is None:
            raise RuntimeError("the realtime function is not mounted")
        message_id = str(uuid.uuid4())
        body = {"message": {"data": base64.b64encode(json.dumps(delivery).encode()).decode(),
                            "messageId": message_id, "publishTime": _now(), "attributes": {}},
                "subscription": "projects/demo/subscriptions/ct-messages-realtime"}
        headers = {"ce-specversion": "1.0", "ce-id": message_id,
                   "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
                   "ce-source": "//pubsub.googleapis.com/projects/demo/topics/ct-messages"}
        response = Client(self.realtime).post("/", json=body, headers=headers)
        try:
            return response.status_code
        finally:
            response.close()


# -- which request wrote what ---------------------------------------------------------------------


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _index(requests: list[Any]) -> dict[tuple[str, Any], list[dict[str, Any]]]:
    """(identifier, value) → the request fragments naming it: the JSON:API resource object of
    that profile, event or catalog object inside each request body, with method, path, status."""
    index: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for request in requests:
        seen: set[tuple[str, Any]] = set()
        for node in _walk(request.json):
            attrs = node.get("attributes") if isinstance(node.get("attributes"), dict) else None
            keys: list[tuple[str, Any]] = []
            if node.get("type") == "profile" and attrs is not None:
                keys += [("external_id", attrs.get("external_id")), ("email", attrs.get("email"))]
                if node.get("id"):
                    keys.append(("id", node["id"]))
            if attrs is not None and attrs.get("unique_id"):
                keys.append(("unique_id", attrs["unique_id"]))
            if str(node.get("type", "")).startswith("catalog-"):
                if isinstance(node.get("id"), str):
                    keys.append(("catalog", node["id"]))
                if attrs is not None and attrs.get("external_id"):
                    keys.append(("catalog", CATALOG_PREFIX + str(attrs["external_id"])))
            for key in keys:
                if key[1] is None or key in seen:
                    continue
                seen.add(key)
                index.setdefault(key, []).append({"method": request.method,
                                                  "path": request.path,
                                                  "status": request.status, "body": node})
    return index


def _first(index: dict[tuple[str, Any], list[dict[str, Any]]],
           keys: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    for key in keys:
        if key[1] is not None and key in index:
            return index[key][-5:]
    return []


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body, default=str), status=status, content_type="application/json")
