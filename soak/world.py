"""A seeded commercetools world for the soak runs.

`build_world(messages, seed)` makes the commercetools data *before* a set of changes (`initial`:
what Klaviyo already mirrors when the run starts) and *after* them (`final`: what the fake serves
during the run), plus the subscription deliveries those changes produce: customers created and
edited, guest and customer orders with state changes and refunds, categories created, renamed
and deleted, products published, edited, unpublished, republished and deleted, stock changes.

Every order's state history is monotone (at most one order-state transition, shipment states
only forward), so the events the history implies are exactly those the final data implies. The
stream is shuffled, about 10% of the deliveries are sent twice, and a few malformed ones are
mixed in. Some resources are deliberately broken in commercetools (they fail validation) or gone
(deleted after their message was sent): neither may produce a Klaviyo write.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

Doc = dict[str, Any]
PROJECT_KEY = "test-project"  # the commercetools fake's project
RESOURCES = ("customers", "orders", "payments", "products", "categories", "inventory")
BASE_TIME = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

FIRST_NAMES = ("Ada", "Ben", "Chloé", "Dmitri", "Eve", "Fatima", "Götz", "Hana", "Ivo", "Jana",
               "Kemal", "Lena", "Mårten", "Nia", "Olek", "Priya")
LAST_NAMES = ("Abara", "Berg", "Castro", "Dunn", "Eklund", "Fischer", "García", "Horvath",
              "Ito", "Jansen", "Kowalski", "López", "Müller", "Nakamura")
CITIES = (("Berlin", "DE", "10115"), ("Wien", "AT", "1010"), ("Zürich", "CH", "8001"),
          ("Lyon", "FR", "69001"), ("Leeds", "GB", "LS1 4AP"), ("Porto", "PT", "4000-001"))
WORDS = ("Linen", "Wool", "Denim", "Cotton", "Silk", "Canvas", "Leather", "Merino", "Tweed")
GARMENTS = ("Shirt", "Jacket", "Trousers", "Scarf", "Cap", "Dress", "Socks", "Coat", "Bag")


def money(cents: int, currency: str = "EUR") -> Doc:
    return {"type": "centPrecision", "currencyCode": currency, "centAmount": cents,
            "fractionDigits": 2}


@dataclass
class Delivery:
    """One Pub/Sub message: its data bytes and what it is (for the figures)."""

    data: bytes
    kind: str  # valid | duplicate | malformed
    label: str  # e.g. "order:OrderCreated" or "malformed:not-json"


@dataclass
class World:
    seed: int
    initial: dict[str, dict[str, Doc]]
    final: dict[str, dict[str, Doc]]
    deliveries: list[Delivery] = field(default_factory=list)
    # Ids deliberately broken in commercetools (fail validation): never a Klaviyo write.
    invalid: dict[str, set[str]] = field(default_factory=dict)
    notes: Counter[str] = field(default_factory=Counter)  # scenario counts, for the figures

    def counts(self) -> Counter[str]:
        return Counter(d.kind for d in self.deliveries)


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.seed = seed
        self.initial: dict[str, dict[str, Doc]] = {r: {} for r in RESOURCES}
        self.final: dict[str, dict[str, Doc]] = {r: {} for r in RESOURCES}
        self.messages: list[tuple[str, Doc]] = []  # (label, delivery)
        self.invalid: dict[str, set[str]] = {r: set() for r in RESOURCES}
        self.notes: Counter[str] = Counter()
        self._seq: Counter[str] = Counter()
        self._clock = 0
        self.emails: set[str] = set()

    # -- basics ----------------------------------------------------------------------------------

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rnd.getrandbits(128), version=4))

    def ts(self) -> str:
        self._clock += self.rnd.randint(1, 90)
        moment = BASE_TIME + timedelta(seconds=self._clock)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def email(self, prefix: str) -> str:
        while True:
            address = f"{prefix}.{self.rnd.randrange(10**8):08d}@example.org"
            if address not in self.emails:
                self.emails.add(address)
                return address

    def message(self, type_id: str, resource_id: str, message_type: str, **fields: Any) -> None:
        self._seq[resource_id] += 1
        seq = self._seq[resource_id]
        when = self.ts()
        delivery = {
            "notificationType": "Message", "projectKey": PROJECT_KEY, "id": self.uid(),
            "version": 1, "sequenceNumber": seq,
            "resource": {"typeId": type_id, "id": resource_id}, "resourceVersion": seq,
            "resourceUserProvidedIdentifiers": {}, "type": message_type,
            "createdAt": when, "lastModifiedAt": when, **fields,
        }
        self.messages.append((f"{type_id}:{message_type}", delivery))

    def change(self, notification: str, type_id: str, resource_id: str,
               identifiers: Doc | None = None) -> None:
        self._seq[resource_id] += 1
        version = self._seq[resource_id] + 1
        delivery: Doc = {
            "notificationType": notification, "projectKey": PROJECT_KEY,
            "resource": {"typeId": type_id, "id": resource_id}, "version": version,
            "modifiedAt": self.ts(),
        }
        if notification == "ResourceUpdated":
            delivery["oldVersion"] = version - 1
        if identifiers:
            delivery["resourceUserProvidedIdentifiers"] = identifiers
        self.messages.append((f"{type_id}:{notification}", delivery))

    def put(self, resource: str, doc: Doc, *, initial: bool, final: bool) -> None:
        if initial:
            self.initial[resource][doc["id"]] = copy.deepcopy(doc)
        if final:
            self.final[resource][doc["id"]] = copy.deepcopy(doc)

    def weighted(self, options: dict[str, float]) -> str:
        names = list(options)
        return self.rnd.choices(names, weights=[options[n] for n in names])[0]

    # -- customers -------------------------------------------------------------------------------

    def address(self, key: str) -> Doc:
        city, country, postal = self.rnd.choice(CITIES)
        address: Doc = {"id": key, "streetName": f"{self.rnd.choice(WORDS)}strasse",
                        "streetNumber": str(self.rnd.randint(1, 200)), "postalCode": postal,
                        "city": city, "country": country}
        if self.rnd.random() < 0.6:
            address["mobile"] = f"+49151{self.rnd.randrange(10**7):07d}"
        elif self.rnd.random() < 0.5:
            address["phone"] = f"030 {self.rnd.randrange(10**6):06d}"  # no country code: dropped
        return address

    def customer_doc(self, cid: str, email: str | None) -> Doc:
        doc: Doc = {
            "id": cid, "version": 1, "firstName": self.rnd.choice(FIRST_NAMES),
            "lastName": self.rnd.choice(LAST_NAMES), "addresses": [self.address("addr-1")],
            "defaultBillingAddressId": "addr-1", "isEmailVerified": False,
            "authenticationMode": "Password", "createdAt": self.ts(),
        }
        if email is not None:
            doc["email"] = email
        if self.rnd.random() < 0.3:
            doc["custom"] = {"type": {"typeId": "type", "id": "customer-fields"},
                             "fields": {"loyaltyTier": self.rnd.choice(("gold", "silver"))}}
        doc["lastModifiedAt"] = doc["createdAt"]
        return doc

    def add_customer(self) -> Doc | None:
        """One customer scenario; returns the final customer when orders may name it."""
        scenario = self.weighted({"new": 45, "edited": 40, "no-email": 5, "deleted": 5,
                                  "invalid": 5})
        self.notes[f"customer:{scenario}"] += 1
        cid = self.uid()
        if scenario == "no-email":
            doc = self.customer_doc(cid, None)
            self.put("customers", doc, initial=False, final=True)
            self.message("customer", cid, "CustomerCreated", customer=doc)
            return None
        doc = self.customer_doc(cid, self.email("c"))
        if scenario == "deleted":  # created, then deleted before the delivery arrives
            self.message("customer", cid, "CustomerCreated", customer=doc)
            self.message("customer", cid, "CustomerDeleted", email=doc["email"])
            return None
        if scenario == "invalid":  # commercetools returns something that fails validation
            bad = {**doc, "addresses": {"not": "a list"}}
            self.put("customers", bad, initial=False, final=True)
            self.invalid["customers"].add(cid)
            self.message("customer", cid, "CustomerCreated", customer=doc)
            return None
        if scenario == "new":
            self.put("customers", doc, initial=False, final=True)
            self.message("customer", cid, "CustomerCreated", customer=doc)
            if self.rnd.random() < 0.3:
                self.change("ResourceUpdated", "customer", cid)
            return doc
        # edited: Klaviyo has the old profile; one to three edits follow
        old = copy.deepcopy(doc)
        self.put("customers", old, initial=True, final=False)
        new = copy.deepcopy(doc)
        new["version"] = 2
        for edit in self.rnd.sample(("first", "last", "street", "custom"), self.rnd.randint(1, 3)):
            if edit == "first":
                new["firstName"] = self.rnd.choice(FIRST_NAMES) + "-" + str(self.rnd.randint(2, 9))
                self.message("customer", cid, "CustomerFirstNameSet", firstName=new["firstName"])
            elif edit == "last":
                new["lastName"] = self.rnd.choice(LAST_NAMES) + "-" + str(self.rnd.randint(2, 9))
                self.message("customer", cid, "CustomerLastNameSet", lastName=new["lastName"])
            elif edit == "street":
                address = new["addresses"][0]
                address["streetNumber"] = str(int(address["streetNumber"]) + 1)
                self.message("customer", cid, "CustomerAddressChanged", address=address)
            else:
                new["custom"] = {"type": {"typeId": "type", "id": "customer-fields"},
                                 "fields": {"loyaltyTier": "platinum"}}
                self.message("customer", cid, "CustomerCustomFieldChanged", name="loyaltyTier",
                             value="platinum")
        if self.rnd.random() < 0.4:
            self.change("ResourceUpdated", "customer", cid)
        new["lastModifiedAt"] = self.ts()
        self.put("customers", new, initial=False, final=True)
        return new

    # -- catalog ---------------------------------------------------------------------------------

    def category_doc(self, cid: str, name: str, parent: Doc | None) -> Doc:
        ancestors = [] if parent is None else [*parent["ancestors"],
                                               {"typeId": "category", "id": parent["id"]}]
        doc: Doc = {"id": cid, "version": 1, "key": f"cat-{cid[:8]}", "name": {"en": name},
                    "slug": {"en": f"{name.lower().replace(' ', '-')}-{cid[:6]}"},
                    "ancestors": ancestors, "orderHint": "0.5", "createdAt": self.ts()}
        if parent is not None:
            doc["parent"] = {"typeId": "category", "id": parent["id"]}
        doc["lastModifiedAt"] = doc["createdAt"]
        return doc

    def add_categories(self, budget: int) -> list[Doc]:
        """A category tree; returns the final categories products may reference."""
        usable: list[Doc] = []
        start = len(self.messages)
        while len(self.messages) - start < budget:
            parents = [c for c in usable if len(c["ancestors"]) < 2]
            parent = self.rnd.choice(parents) if parents and self.rnd.random() < 0.7 else None
            scenario = self.weighted({"existing": 40, "new": 30, "renamed": 18, "deleted": 12})
            self.notes[f"category:{scenario}"] += 1
            cid = self.uid()
            name = f"{self.rnd.choice(WORDS)} {self.rnd.choice(GARMENTS)}s"
            doc = self.category_doc(cid, name, parent if scenario != "deleted" else None)
            if scenario == "existing":
                self.put("categories", doc, initial=True, final=True)
                if self.rnd.random() < 0.2:  # an unrelated edit: nothing to write
                    self.change("ResourceUpdated", "category", cid)
            elif scenario == "new":
                self.put("categories", doc, initial=False, final=True)
                self.message("category", cid, "CategoryCreated", category=doc)
                if self.rnd.random() < 0.5:
                    self.change("ResourceCreated", "category", cid)
            elif scenario == "renamed":  # the breadcrumbs of its descendants change too
                self.put("categories", doc, initial=True, final=False)
                renamed = {**doc, "version": 2, "name": {"en": name + " (new)"}}
                self.put("categories", renamed, initial=False, final=True)
                self.change("ResourceUpdated", "category", cid)
                doc = renamed
            else:  # an existing leaf, deleted; no product references it
                self.put("categories", doc, initial=True, final=False)
                if self.rnd.random() < 0.5:
                    self.message("category", cid, "CategoryCreated", category=doc)
                self.change("ResourceDeleted", "category", cid)
                continue
            usable.append(doc)
        # Categories created as children of renamed ones must carry the new names' ancestors:
        # the tree is by reference, so nothing more to do; keep only those still present.
        return [c for c in usable if c["id"] in self.final["categories"]]

    def variant_doc(self, number: int, sku: str, cents: int, stock: int | None) -> Doc:
        variant: Doc = {
            "id": number, "sku": sku, "key": sku.lower(),
            "prices": [{"id": self.uid(), "value": money(cents)}],
            "images": [{"url": f"https://img.example/{sku}.jpg",
                        "dimensions": {"w": 800, "h": 800}}],
            "attributes": [{"name": "colour", "value": self.rnd.choice(WORDS)}],
        }
        if stock is not None:
            variant["availability"] = {"isOnStock": stock > 0, "availableQuantity": stock}
        return variant

    def product_doc(self, pid: str, number: int, categories: list[Doc], *, published: bool,
                    stock: dict[str, int | None], price_shift: int = 0,
                    name: str | None = None) -> Doc:
        skus = list(stock)
        variants = [self.variant_doc(i + 1, sku, 1000 + 250 * i + price_shift, stock[sku])
                    for i, sku in enumerate(skus)]
        name = name or f"{WORDS[number % len(WORDS)]} {GARMENTS[number % len(GARMENTS)]} {number}"
        data = {
            "name": {"en": name, "de": name + " (DE)"}, "description": {"en": f"About {name}"},
            "slug": {"en": f"product-{number}"},
            "categories": [{"typeId": "category", "id": c["id"]} for c in categories],
            "masterVariant": variants[0], "variants": variants[1:],
        }
        return {"id": pid, "version": 1, "key": f"product-{number}",
                "productType": {"typeId": "product-type", "id": "apparel"},
                "masterData": {"published": published, "current": data,
                               "staged": copy.deepcopy(data), "hasStagedChanges": False},
                "createdAt": "2026-02-01T00:00:00.000Z", "lastModifiedAt": self.ts()}

    def inventory(self, sku: str, quantity: int, *, initial: bool, final: bool,
                  entry_id: str | None = None) -> Doc:
        doc = {"id": entry_id or self.uid(), "version": 1, "sku": sku,
               "quantityOnStock": quantity, "availableQuantity": quantity}
        self.put("inventory", doc, initial=initial, final=final)
        return doc

    def add_product(self, number: int, categories: list[Doc]) -> Doc | None:
        """One product scenario (and its stock); returns the final product if orders may use it."""
        scenario = self.weighted({"new": 22, "new-unpublished": 5, "unchanged": 18,
                                  "edited": 20, "unpublished": 10, "deleted": 8,
                                  "republished": 6, "stock-only": 8, "invalid": 3})
        self.notes[f"product:{scenario}"] += 1
        pid = self.uid()
        cats = self.rnd.sample(categories, min(len(categories), self.rnd.randint(0, 2)))
        skus = [f"SKU-{number}-{i}" for i in range(1, self.rnd.randint(1, 6) + 1)]
        initial_stock: dict[str, int | None] = {s: self.rnd.randint(0, 40) for s in skus}
        final_stock = dict(initial_stock)
        if scenario == "invalid":
            doc = self.product_doc(pid, number, cats, published=True, stock=initial_stock)
            del doc["masterData"]["current"]
            self.put("products", doc, initial=False, final=True)
            self.invalid["products"].add(pid)
            self.message("product", pid, "ProductPublished", scope="All")
            return None
        existed = scenario not in ("new", "new-unpublished")
        entry_ids = {s: self.uid() for s in skus}
        if existed:  # Klaviyo mirrors it already: only categories it could reference then
            old = [c for c in categories if all(
                a in self.initial["categories"]
                for a in [c["id"], *(r["id"] for r in c["ancestors"])])]
            cats = self.rnd.sample(old, min(len(old), len(cats)))
        initial = self.product_doc(pid, number, cats, published=True, stock=initial_stock)
        final_skus = list(skus)
        price_shift, name = 0, None
        if scenario == "edited":
            edit = self.weighted({"price": 1, "name": 1, "add-variant": 1, "drop-variant": 1})
            if edit == "price":
                price_shift = 99
            elif edit == "name":
                name = f"Renamed product {number}"
            elif edit == "add-variant":
                final_skus.append(f"SKU-{number}-{len(skus) + 1}")
            elif len(final_skus) > 1:
                final_skus.pop()  # Klaviyo's variant for it must go
        if scenario == "stock-only" or (scenario in ("unchanged", "edited")
                                        and self.rnd.random() < 0.5):
            for sku in self.rnd.sample(skus, self.rnd.randint(1, len(skus))):
                if sku in final_skus:
                    deleted = self.rnd.random() < 0.15
                    final_stock[sku] = None if deleted else self.rnd.randint(0, 60)
        for sku in final_skus:
            final_stock.setdefault(sku, self.rnd.randint(1, 30))
        final_stock = {s: final_stock[s] for s in final_skus}
        published = scenario not in ("unpublished", "new-unpublished")
        final = self.product_doc(pid, number, cats, published=published, stock=final_stock,
                                 price_shift=price_shift, name=name)
        final["version"] = 2
        if existed:
            self.put("products", initial, initial=True, final=False)
        if scenario != "deleted":
            self.put("products", final, initial=False, final=True)
        # stock: entries before and after (one channel-less entry per SKU)
        for sku in skus:
            stock = initial_stock[sku]
            if stock is not None:
                self.inventory(sku, stock, initial=existed, final=False,
                               entry_id=entry_ids[sku])
        for sku in final_skus:
            quantity = final_stock[sku]
            if quantity is not None:
                entry = self.inventory(sku, quantity, initial=False, final=True,
                                       entry_id=entry_ids.get(sku))
            if not existed:
                continue
            before = initial_stock.get(sku) if sku in skus else None
            if quantity == before:
                continue
            if before is None and quantity is not None:
                self.message("inventory-entry", entry["id"], "InventoryEntryCreated",
                             inventoryEntry=entry)
            elif quantity is None:
                self.message("inventory-entry", entry_ids[sku], "InventoryEntryDeleted", sku=sku)
            else:
                self.message("inventory-entry", entry["id"], "InventoryEntryQuantitySet",
                             oldQuantityOnStock=before, newQuantityOnStock=quantity,
                             oldAvailableQuantity=before, newAvailableQuantity=quantity)
                if self.rnd.random() < 0.3:
                    self.change("ResourceUpdated", "inventory-entry", entry["id"],
                                {"sku": sku})
        # product deliveries
        if scenario == "new":
            self.message("product", pid, "ProductPublished", scope="All")
            if self.rnd.random() < 0.5:
                self.change("ResourceCreated", "product", pid, {"key": final["key"]})
        elif scenario == "new-unpublished":
            self.change("ResourceCreated", "product", pid, {"key": final["key"]})
        elif scenario == "edited":
            if self.rnd.random() < 0.6:
                self.message("product", pid, "ProductPublished", scope="All")
            self.change("ResourceUpdated", "product", pid, {"key": final["key"]})
        elif scenario == "unpublished":
            self.message("product", pid, "ProductUnpublished")
            if self.rnd.random() < 0.5:
                self.change("ResourceUpdated", "product", pid, {"key": final["key"]})
        elif scenario == "deleted":
            if self.rnd.random() < 0.7:
                self.message("product", pid, "ProductDeleted", removedImageUrls=[])
            self.change("ResourceDeleted", "product", pid, {"key": final["key"]})
        elif scenario == "republished":  # unpublished, then published again
            self.message("product", pid, "ProductUnpublished")
            self.message("product", pid, "ProductPublished", scope="All")
        elif scenario == "unchanged" and self.rnd.random() < 0.3:
            self.change("ResourceUpdated", "product", pid, {"key": final["key"]})
        return final if scenario not in ("deleted",) else None

    # -- orders ----------------------------------------------------------------------------------

    def line_item(self, product: Doc | None) -> Doc:
        quantity = self.rnd.randint(1, 3)
        if product is None:  # a product deleted since: no categories, no URL
            sku, pid, name, cents, slug = f"GONE-{self.rnd.randint(1, 99)}", self.uid(), \
                "Discontinued item", 990, None
            number = 1
        else:
            data = product["masterData"]["current"]
            variant = self.rnd.choice([data["masterVariant"], *data["variants"]])
            sku, pid, name = variant["sku"], product["id"], data["name"]["en"]
            cents, slug, number = variant["prices"][0]["value"]["centAmount"], data["slug"], \
                variant["id"]
        item: Doc = {"id": self.uid(), "productId": pid, "name": {"en": name},
                     "variant": {"id": number, "sku": sku,
                                 "images": [{"url": f"https://img.example/{sku}.jpg",
                                             "dimensions": {"w": 800, "h": 800}}]},
                     "price": {"value": money(cents)}, "quantity": quantity,
                     "totalPrice": money(cents * quantity)}
        if slug:
            item["productSlug"] = slug
        return item

    def add_order(self, customers: list[Doc], products: list[Doc | None]) -> None:
        scenario = self.weighted({"ok": 94, "invalid": 2, "deleted": 2, "imported": 2})
        self.notes[f"order:{scenario}"] += 1
        oid = self.uid()
        customer = self.rnd.choice(customers) if customers and self.rnd.random() < 0.75 else None
        lines = [self.line_item(self.rnd.choice(products) if products else None)
                 for _ in range(self.rnd.randint(1, 4))]
        custom_lines = []
        if self.rnd.random() < 0.15:
            custom_lines.append({"id": self.uid(), "name": {"en": "Gift wrap"}, "slug": "gift-wrap",
                                 "money": money(300), "totalPrice": money(300), "quantity": 1})
        shipping = 495
        total = sum(li["totalPrice"]["centAmount"] for li in lines + custom_lines) + shipping
        state = self.weighted({"Open": 40, "Confirmed": 20, "Complete": 10, "Cancelled": 10,
                               "Open+Shipped": 10, "Confirmed+Delivered": 10})
        order_state, _, shipment = state.partition("+")
        created = self.ts()
        if customer is not None:
            email, billing = customer["email"], copy.deepcopy(customer["addresses"][0])
        else:
            email, billing = self.email("guest"), self.address("billing")
        billing.pop("mobile", None)
        billing.pop("phone", None)
        order: Doc = {
            "id": oid, "version": 1, "orderNumber": f"SO-{self.rnd.randrange(10**6):06d}",
            "customerEmail": email, "createdAt": created, "lastModifiedAt": created,
            "orderState": "Open", "shipmentState": "Pending", "paymentState": "Paid",
            "totalPrice": money(total), "lineItems": lines, "customLineItems": custom_lines,
            "shippingInfo": {"shippingMethodName": "Standard", "price": money(shipping)},
            "billingAddress": billing, "origin": "Customer",
        }
        if customer is not None:
            order["customerId"] = customer["id"]
        payment = self.payment(oid, total)
        order["paymentInfo"] = {"payments": [{"typeId": "payment", "id": payment["id"]}]}
        placed = copy.deepcopy(order)
        created_message = "OrderImported" if scenario == "imported" else "OrderCreated"
        self.message("order", oid, created_message, order=placed)
        if order_state != "Open":
            order["orderState"] = order_state
            self.message("order", oid, "OrderStateChanged", orderState=order_state,
                         oldOrderState="Open")
        if shipment:
            steps = ["Shipped"] if shipment == "Shipped" else ["Shipped", "Delivered"]
            previous = "Pending"
            for step in steps:
                self.message("order", oid, "OrderShipmentStateChanged", shipmentState=step,
                             oldShipmentState=previous)
                previous = step
            order["shipmentState"] = shipment
        order["lastModifiedAt"] = self.ts()
        if scenario == "invalid":
            del order["totalPrice"]
            self.invalid["orders"].add(oid)
        if scenario != "deleted":
            self.put("orders", order, initial=False, final=True)
            self.put("payments", payment, initial=False, final=True)

    def payment(self, order_id: str, total: int) -> Doc:
        pid = self.uid()
        charge = {"id": self.uid(), "type": "Charge", "state": "Success", "amount": money(total),
                  "timestamp": self.ts()}
        payment: Doc = {"id": pid, "version": 1, "amountPlanned": money(total),
                        "transactions": [charge]}
        self.message("payment", pid, "PaymentTransactionAdded", transaction=charge)
        if self.rnd.random() < 0.35:
            for _ in range(self.rnd.randint(1, 2)):
                kind = self.weighted({"success": 5, "pending-success": 3, "pending": 1,
                                      "failure": 1})
                self.notes[f"refund:{kind}"] += 1
                refund = {"id": self.uid(), "type": "Refund", "amount": money(total // 4),
                          "timestamp": self.ts(),
                          "state": "Pending" if kind.startswith("pending") else
                          ("Failure" if kind == "failure" else "Success")}
                self.message("payment", pid, "PaymentTransactionAdded",
                             transaction=copy.deepcopy(refund))
                if kind == "pending-success":
                    refund["state"] = "Success"
                    self.message("payment", pid, "PaymentTransactionStateChanged",
                                 transactionId=refund["id"], state="Success")
                payment["transactions"].append(refund)
        return payment


MALFORMED: tuple[tuple[str, bytes], ...] = (
    ("not-json", b"this is not JSON"),
    ("not-utf8", b"\xff\xfe\x00\x81garbage"),
    ("json-array", b"[1, 2, 3]"),
    ("json-null", b"null"),
    ("no-resource", json.dumps({"notificationType": "Message", "type": "OrderCreated"}).encode()),
    ("bad-notification-type", json.dumps({"notificationType": "Nope", "resource": {
        "typeId": "order", "id": "x"}}).encode()),
    ("resource-id-not-string", json.dumps({"notificationType": "Message", "resource": {
        "typeId": "order", "id": 5}, "type": "OrderCreated"}).encode()),
    ("cloudevent-without-object", json.dumps({"specversion": "1.0", "id": "x",
                                              "data": "not an object"}).encode()),
    ("empty", b""),
)


def build_world(messages: int, seed: int, *, duplicate_rate: float = 0.10,
                malformed: int | None = None) -> World:
    """About `messages` deliveries in all: valid ones, ~10% duplicates and a few malformed."""
    if messages < 50:
        raise ValueError("messages must be at least 50")
    b = _Builder(seed)
    malformed = malformed if malformed is not None else max(len(MALFORMED), messages // 500)
    valid_target = round((messages - malformed) / (1 + duplicate_rate))
    budget = {"categories": 0.05, "products": 0.17, "customers": 0.28}
    categories = b.add_categories(max(8, int(valid_target * budget["categories"])))
    products: list[Doc | None] = []
    number = 0
    while len(b.messages) < valid_target * (budget["categories"] + budget["products"]):
        number += 1
        products.append(b.add_product(number, categories))
    customers: list[Doc] = []
    stop = valid_target * (budget["categories"] + budget["products"] + budget["customers"])
    while len(b.messages) < stop:
        customer = b.add_customer()
        if customer is not None:
            customers.append(customer)
    sold = [p for p in products if p is not None] + [None]  # None: a deleted product
    while len(b.messages) < valid_target:
        b.add_order(customers, sold)

    deliveries = [Delivery(json.dumps(d, separators=(",", ":")).encode(), "valid", label)
                  for label, d in b.messages]
    duplicates = [Delivery(d.data, "duplicate", d.label)
                  for d in b.rnd.sample(deliveries, round(len(deliveries) * duplicate_rate))]
    bad = [Delivery(MALFORMED[i % len(MALFORMED)][1], "malformed",
                    f"malformed:{MALFORMED[i % len(MALFORMED)][0]}") for i in range(malformed)]
    stream = deliveries + duplicates + bad
    b.rnd.shuffle(stream)
    return World(seed, b.initial, b.final, stream,
                 {k: v for k, v in b.invalid.items() if v}, b.notes)


def bulk_world(customers: int, orders: int, seed: int) -> World:
    """Only final data (the bulk import reads commercetools as it is): customers, some without
    an email, some with an email Klaviyo refuses, one unreadable; orders of those customers and
    of guests, in every state, some with refunds, one unreadable."""
    b = _Builder(seed)
    categories = b.add_categories(6)
    products = [b.add_product(n, categories) for n in range(1, 11)]
    sold = [p for p in products if p is not None] + [None]
    people: list[Doc] = []
    for i in range(customers):
        cid = b.uid()
        roll = b.rnd.random()
        if roll < 0.05:
            doc = b.customer_doc(cid, None)
            b.notes["customer:no-email"] += 1
        elif roll < 0.08:
            doc = b.customer_doc(cid, f"broken-{i}@@example")  # Klaviyo refuses it
            b.notes["customer:bad-email"] += 1
        else:
            doc = b.customer_doc(cid, b.email("c"))
            people.append(doc)
        b.put("customers", doc, initial=False, final=True)
    broken = b.customer_doc(b.uid(), b.email("c"))
    broken["addresses"] = "not a list"
    b.put("customers", broken, initial=False, final=True)
    b.invalid["customers"].add(broken["id"])
    for _ in range(orders):
        b.add_order(people, sold)
    return World(seed, {r: {} for r in RESOURCES}, b.final, [],
                 {k: v for k, v in b.invalid.items() if v}, b.notes)
