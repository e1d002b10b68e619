"""Commercetools changing while the realtime soak runs.

The seeded world (soak/world.py) is loaded before publishing starts; `LiveEdits` then edits the
commercetools fake *while* the world's deliveries (and its own) are in flight, in bursts of
edits to one resource a few tens of milliseconds apart, so several deliveries for the same
customer, product, category or order overlap in the function's workers and the one that read an
older version may write last:

- customers: names edited two to four times in a row;
- a registered customer's email changed between their order and its fulfilment (the order is
  shipped after the email change);
- products: renamed, unpublished and republished (a few end unpublished);
- categories: renamed two or three times;
- orders: confirmed (state transitions stay monotone, so the events the history implies are the
  events the final data implies).

Each edit bumps the document's version and lastModifiedAt and publishes the delivery
commercetools would send for it. The run's end check reads commercetools' final state, so every
edit must end reflected in Klaviyo (nothing stale, nothing resurrected).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from soak.world import PROJECT_KEY, Delivery, World

Doc = dict[str, Any]
Publish = Callable[[Delivery], None]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LiveEdits:
    """A seeded plan of edit bursts, applied to the commercetools fake from a thread."""

    def __init__(self, world: World, ct: Any, seed: int, *, bursts: int,
                 gap: tuple[float, float] = (0.05, 0.4),
                 pause: tuple[float, float] = (0.05, 0.4)) -> None:
        self.world, self.ct, self.gap, self.pause = world, ct, gap, pause
        self.rnd = random.Random(seed * 7919 + 14)
        self.bursts = bursts
        self.edits: Counter[str] = Counter()  # what was changed, for the figures
        self.deliveries: list[Delivery] = []
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        final, invalid = world.final, world.invalid
        self._customers = [c for c, d in final["customers"].items()
                           if d.get("email") and c not in invalid.get("customers", set())]
        # An order's events are written once, with the catalog data of that moment (product
        # names, category names): Klaviyo events cannot be updated, so catalog edits after an
        # order would make its events differ from what the final data implies. Catalog edits
        # therefore touch only products no order names, and categories none of those use.
        ordered = {line.get("productId") for order in final["orders"].values()
                   for line in order.get("lineItems", [])}
        used: set[str] = set()
        for pid in ordered:
            product = final["products"].get(pid) or world.initial["products"].get(pid)
            for data in ((product or {}).get("masterData") or {}).values():
                if not isinstance(data, dict):
                    continue
                for ref in data.get("categories", []):
                    used.add(ref["id"])
                    category = final["categories"].get(ref["id"]) or {}
                    used.update(a["id"] for a in category.get("ancestors", []))
        self._products = [p for p in final["products"]
                          if p not in invalid.get("products", set()) and p not in ordered]
        self._categories = [c for c in final["categories"] if c not in used]
        self._orders = [o for o, d in final["orders"].items()
                        if o not in invalid.get("orders", set())]

    # -- running ---------------------------------------------------------------------------------

    def start(self, publish: Publish) -> None:
        self._thread = threading.Thread(target=self._run, args=(publish,), name="live-edits",
                                        daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, publish: Publish) -> None:
        try:
            kinds = {"customer": 3, "email-before-fulfilment": 1, "product": 3, "category": 1,
                     "order": 1}
            names = list(kinds)
            for _ in range(self.bursts):
                kind = self.rnd.choices(names, weights=[kinds[n] for n in names])[0]
                getattr(self, "_" + kind.replace("-", "_"))(publish)
                time.sleep(self.rnd.uniform(*self.pause))
        except BaseException as exc:  # reported by the run, which then fails
            self.error = exc
        finally:
            self.done.set()

    # -- one edit --------------------------------------------------------------------------------

    def _edit(self, resource: str, doc_id: str, change: Callable[[Doc], None]) -> Doc | None:
        doc = self.ct.get(resource, doc_id)
        if doc is None:
            return None
        change(doc)
        doc["version"] = int(doc.get("version", 1)) + 1
        doc["lastModifiedAt"] = _now()
        self.ct.add(resource, doc)
        return doc

    def _send(self, publish: Publish, label: str, delivery: Doc) -> None:
        item = Delivery(json.dumps(delivery, separators=(",", ":")).encode(), "edit", label)
        self.deliveries.append(item)
        publish(item)

    def _message(self, publish: Publish, type_id: str, doc: Doc, message_type: str,
                 **fields: Any) -> None:
        when = _now()
        self._send(publish, f"edit:{type_id}:{message_type}", {
            "notificationType": "Message", "projectKey": PROJECT_KEY, "id": str(uuid.uuid4()),
            "version": 1, "sequenceNumber": doc["version"],
            "resource": {"typeId": type_id, "id": doc["id"]}, "resourceVersion": doc["version"],
            "resourceUserProvidedIdentifiers": {}, "type": message_type,
            "createdAt": when, "lastModifiedAt": when, **fields})

    def _updated(self, publish: Publish, type_id: str, doc: Doc) -> None:
        self._send(publish, f"edit:{type_id}:ResourceUpdated", {
            "notificationType": "ResourceUpdated", "projectKey": PROJECT_KEY,
            "resource": {"typeId": type_id, "id": doc["id"]}, "version": doc["version"],
            "oldVersion": doc["version"] - 1, "modifiedAt": _now()})

    def _wait(self) -> None:
        time.sleep(self.rnd.uniform(*self.gap))

    # -- bursts ----------------------------------------------------------------------------------

    def _customer(self, publish: Publish) -> None:
        if not self._customers:
            return
        cid = self.rnd.choice(self._customers)
        for _ in range(self.rnd.randint(2, 4)):
            field_name, message = self.rnd.choice((("firstName", "CustomerFirstNameSet"),
                                                   ("lastName", "CustomerLastNameSet")))
            value = f"Live{self.rnd.randrange(10**6):06d}"

            def change(doc: Doc, field_name: str = field_name, value: str = value) -> None:
                doc[field_name] = value

            doc = self._edit("customers", cid, change)
            if doc is None:
                return
            self.edits["customer name"] += 1
            if self.rnd.random() < 0.3:
                self._updated(publish, "customer", doc)
            else:
                self._message(publish, "customer", doc, message, **{field_name: value})
            self._wait()

    def _email_before_fulfilment(self, publish: Publish) -> None:
        """Order placed (already in the stream), then the customer's email changes, then the
        order ships: the fulfilment must land on the same Klaviyo profile."""
        orders = [o for o in self._orders
                  if (d := self.ct.get("orders", o)) and d.get("customerId")
                  and d.get("shipmentState") == "Pending" and d.get("orderState") != "Cancelled"
                  and d["customerId"] in self._customers]
        if not orders:
            return
        oid = self.rnd.choice(orders)
        self._orders.remove(oid)
        order = self.ct.get("orders", oid)
        email = f"moved.{self.rnd.randrange(10**8):08d}@example.org"

        def new_email(doc: Doc) -> None:
            doc["email"] = email

        customer = self._edit("customers", order["customerId"], new_email)
        if customer is None:
            return
        self._message(publish, "customer", customer, "CustomerEmailChanged", email=email)
        self._wait()

        def shipped(doc: Doc) -> None:
            doc["shipmentState"] = "Shipped"

        order = self._edit("orders", oid, shipped)
        if order is None:
            return
        self._message(publish, "order", order, "OrderShipmentStateChanged",
                      shipmentState="Shipped", oldShipmentState="Pending")
        self.edits["email changed before fulfilment"] += 1

    def _product(self, publish: Publish) -> None:
        if not self._products:
            return
        pid = self.rnd.choice(self._products)
        steps = self.rnd.choice((("rename", "rename"), ("unpublish", "publish"),
                                 ("rename", "unpublish", "publish", "rename"),
                                 ("publish", "rename", "unpublish"),
                                 ("unpublish", "rename", "publish")))
        for step in steps:
            if step == "rename":
                name = f"Live product {self.rnd.randrange(10**6):06d}"

                def rename(doc: Doc, name: str = name) -> None:
                    for projection in ("current", "staged"):
                        doc["masterData"][projection]["name"]["en"] = name

                doc = self._edit("products", pid, rename)
                if doc is None:
                    return
                self.edits["product renamed"] += 1
                self._updated(publish, "product", doc)
            else:
                published = step == "publish"

                def flag(doc: Doc, published: bool = published) -> None:
                    doc["masterData"]["published"] = published

                doc = self._edit("products", pid, flag)
                if doc is None:
                    return
                self.edits[f"product {step}ed"] += 1
                if published:
                    self._message(publish, "product", doc, "ProductPublished", scope="All")
                else:
                    self._message(publish, "product", doc, "ProductUnpublished")
            self._wait()

    def _category(self, publish: Publish) -> None:
        if not self._categories:
            return
        cid = self.rnd.choice(self._categories)
        for _ in range(self.rnd.randint(2, 3)):
            name = f"Live category {self.rnd.randrange(10**6):06d}"

            def rename(doc: Doc, name: str = name) -> None:
                doc["name"] = {**doc.get("name", {}), "en": name}

            doc = self._edit("categories", cid, rename)
            if doc is None:
                return
            self.edits["category renamed"] += 1
            self._updated(publish, "category", doc)
            self._wait()

    def _order(self, publish: Publish) -> None:
        opened = [o for o in self._orders
                  if (d := self.ct.get("orders", o)) and d.get("orderState") == "Open"]
        if not opened:
            return
        oid = self.rnd.choice(opened)

        def confirm(doc: Doc) -> None:
            doc["orderState"] = "Confirmed"

        doc = self._edit("orders", oid, confirm)
        if doc is None:
            return
        self.edits["order confirmed"] += 1
        self._message(publish, "order", doc, "OrderStateChanged", orderState="Confirmed",
                      oldOrderState="Open")
        if self.rnd.random() < 0.5:
            self._wait()
            self._updated(publish, "order", doc)  # a second delivery for the same version
