"""Deterministic commercetools documents and subscription deliveries for the benchmark.

Everything is a pure function of (kind, index): the fake-server process builds the documents it
serves, the benchmark process builds the deliveries that name them, and both agree without
passing data around. Ids are UUIDs (uuid5), so keyset order (`sort=id asc`) is unrelated to
creation order, as in a real project.

Shapes follow commercetools' API (camelCase, typed money, references) and carry what a real
shop's documents carry for the fields the connector maps: addresses and custom fields on
customers, payments (expanded by the bulk import) on orders, prices in two currencies, images,
attributes, availability and expanded-able categories on products.
"""

from __future__ import annotations

import uuid
from typing import Any

Doc = dict[str, Any]

PROJECT_KEY = "test-project"  # the CT fake's project
_NS = uuid.UUID("6f1c1d7e-3b1a-4c52-9d0e-2a7b5f0c9e11")

CATEGORY_ROOTS = 8
CATEGORY_CHILDREN = 5  # per root: 8 + 40 categories
ORDER_LINES = 3  # bulk orders
ORDER_PRODUCT_POOL = 1000  # bulk orders name products among the first 1,000
PRODUCT_VARIANTS = 5  # bulk products
RT_ORDER_LINES = 5  # realtime OrderCreated
RT_PRODUCT_VARIANTS = 10  # realtime ProductPublished

FIRST_NAMES = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ida", "Jonas")
LAST_NAMES = ("Schmidt", "Meyer", "Weber", "Wagner", "Becker", "Hoffmann", "Koch", "Richter")
CITIES = (("Berlin", "10115"), ("Hamburg", "20095"), ("Munich", "80331"), ("Cologne", "50667"))
COLORS = ("black", "white", "blue", "red", "green")
SIZES = ("XS", "S", "M", "L", "XL", "XXL", "3XL", "4XL", "5XL", "6XL")


def doc_id(kind: str, i: int) -> str:
    return str(uuid.uuid5(_NS, f"{kind}-{i}"))


def _money(cents: int, currency: str = "EUR") -> Doc:
    return {"type": "centPrecision", "currencyCode": currency, "centAmount": cents,
            "fractionDigits": 2}


def _time(i: int, offset_minutes: int = 0) -> str:
    minutes = (i * 7 + offset_minutes) % (60 * 24 * 365)
    day, rest = divmod(minutes, 60 * 24)
    hour, minute = divmod(rest, 60)
    month, mday = divmod(day, 28)
    return f"2025-{month % 12 + 1:02d}-{mday + 1:02d}T{hour:02d}:{minute:02d}:00.000Z"


# ---- customers ------------------------------------------------------------------------------


def customer_email(prefix: str, i: int) -> str:
    return f"{prefix}customer{i}@example.com"


def customer(i: int, prefix: str = "") -> Doc:
    first, last = FIRST_NAMES[i % len(FIRST_NAMES)], LAST_NAMES[i % len(LAST_NAMES)]
    city, postal = CITIES[i % len(CITIES)]
    address_id = f"addr-{i}-1"
    addresses = [{
        "id": address_id, "firstName": first, "lastName": last, "streetName": "Hauptstrasse",
        "streetNumber": str(i % 200 + 1), "postalCode": postal, "city": city, "country": "DE",
        "phone": f"+49 30 {1000000 + i % 8999999}", "email": customer_email(prefix, i),
    }]
    if i % 4 == 0:  # a second (shipping) address
        addresses.append({"id": f"addr-{i}-2", "streetName": "Nebenweg", "streetNumber": "2",
                          "postalCode": postal, "city": city, "country": "DE"})
    doc: Doc = {
        "id": doc_id(prefix + "customer", i), "version": 3,
        "email": customer_email(prefix, i), "firstName": first, "lastName": last,
        "addresses": addresses, "defaultBillingAddressId": address_id,
        "billingAddressIds": [address_id], "shippingAddressIds": [a["id"] for a in addresses],
        "isEmailVerified": True, "authenticationMode": "Password",
        "createdAt": _time(i), "lastModifiedAt": _time(i, 60),
    }
    if i % 7 == 0:
        doc["companyName"] = f"{last} GmbH"
    if i % 3 == 0:
        doc["custom"] = {"type": {"typeId": "type", "id": "customer-fields"},
                         "fields": {"loyaltyTier": ("gold", "silver", "bronze")[i % 3],
                                    "newsletter": i % 2 == 0}}
    return doc


# ---- catalog --------------------------------------------------------------------------------


def category_index_ids() -> list[str]:
    return [doc_id("category", i) for i in range(CATEGORY_ROOTS * (1 + CATEGORY_CHILDREN))]


def categories() -> list[Doc]:
    docs = []
    for r in range(CATEGORY_ROOTS):
        root_id = doc_id("category", r)
        docs.append({"id": root_id, "version": 1, "key": f"root-{r}",
                     "name": {"en": f"Department {r}", "de": f"Abteilung {r}"},
                     "slug": {"en": f"department-{r}"}, "ancestors": [], "orderHint": "0.1"})
        for c in range(CATEGORY_CHILDREN):
            index = CATEGORY_ROOTS + r * CATEGORY_CHILDREN + c
            docs.append({"id": doc_id("category", index), "version": 1,
                         "key": f"cat-{r}-{c}", "name": {"en": f"Range {r}.{c}"},
                         "slug": {"en": f"range-{r}-{c}"},
                         "parent": {"typeId": "category", "id": root_id},
                         "ancestors": [{"typeId": "category", "id": root_id}],
                         "orderHint": "0.2"})
    return docs


def _sku(prefix: str, i: int, n: int) -> str:
    return f"{prefix}SKU-{i:06d}-{n:02d}"


def _variant(prefix: str, i: int, n: int) -> Doc:
    cents = 1990 + (i % 50) * 100 + n * 10
    return {
        "id": n, "sku": _sku(prefix, i, n), "key": f"{prefix}v-{i}-{n}",
        "prices": [
            {"id": f"price-{i}-{n}-eur", "value": _money(cents)},
            {"id": f"price-{i}-{n}-usd", "value": _money(cents + 200, "USD"), "country": "US"},
        ],
        "images": [{"url": f"https://images.example.com/{prefix}p{i}/{n}.jpg",
                    "dimensions": {"w": 800, "h": 1000}}],
        "attributes": [{"name": "color", "value": COLORS[n % len(COLORS)]},
                       {"name": "size", "value": SIZES[(n - 1) % len(SIZES)]}],
        "availability": {"isOnStock": True, "availableQuantity": (i + n) % 40},
    }


def product(i: int, prefix: str = "", variants: int = PRODUCT_VARIANTS) -> Doc:
    child = CATEGORY_ROOTS + i % (CATEGORY_ROOTS * CATEGORY_CHILDREN)
    data = {
        "name": {"en": f"Product {i}", "de": f"Produkt {i}"},
        "description": {"en": f"Description of product {i}: soft cotton, regular fit."},
        "slug": {"en": f"{prefix}product-{i}"},
        "categories": [{"typeId": "category", "id": doc_id("category", child)}],
        "categoryOrderHints": {},
        "masterVariant": _variant(prefix, i, 1),
        "variants": [_variant(prefix, i, n) for n in range(2, variants + 1)],
        "searchKeywords": {},
    }
    return {
        "id": doc_id(prefix + "product", i), "version": 5, "key": f"{prefix}product-{i}",
        "productType": {"typeId": "product-type", "id": "apparel"},
        "masterData": {"published": True, "hasStagedChanges": False, "current": data,
                       "staged": data},
        "createdAt": _time(i), "lastModifiedAt": _time(i, 30),
    }


# ---- orders ---------------------------------------------------------------------------------

# State mix of the bulk orders (by index mod 10): 0 cancelled; 1-3 completed and delivered;
# 4 completed, delivered and refunded (a successful Refund transaction); 5-9 open.


def order_state(i: int) -> tuple[str, str, bool]:
    """(orderState, shipmentState, refunded)."""
    slot = i % 10
    if slot == 0:
        return "Cancelled", "Pending", False
    if slot <= 4:
        return "Complete", "Delivered", slot == 4
    return "Open", "Pending", False


def _line(prefix: str, i: int, j: int, product_pool: int) -> Doc:
    p = (i * 31 + j * 7) % product_pool
    n = j % PRODUCT_VARIANTS + 1
    cents = 1990 + (p % 50) * 100 + n * 10
    quantity = 1 + (i + j) % 3
    return {
        "id": doc_id(prefix + "line", i * 100 + j), "productId": doc_id(prefix + "product", p),
        "productKey": f"{prefix}product-{p}", "name": {"en": f"Product {p}"},
        "productSlug": {"en": f"{prefix}product-{p}"},
        "productType": {"typeId": "product-type", "id": "apparel"},
        "variant": {"id": n, "sku": _sku(prefix, p, n),
                    "images": [{"url": f"https://images.example.com/{prefix}p{p}/{n}.jpg",
                                "dimensions": {"w": 800, "h": 1000}}],
                    "attributes": [{"name": "size", "value": SIZES[(n - 1) % len(SIZES)]}]},
        "price": {"id": f"price-{p}-{n}-eur", "value": _money(cents)},
        "quantity": quantity, "totalPrice": _money(cents * quantity),
        "discountedPricePerQuantity": [], "state": [{"quantity": quantity,
                                                     "state": {"typeId": "state", "id": "st"}}],
        "priceMode": "Platform", "lineItemMode": "Standard",
    }


def payment(i: int, total_cents: int, refunded: bool, prefix: str = "") -> Doc:
    transactions = [{"id": doc_id(prefix + "txn", i * 10), "type": "Charge", "state": "Success",
                     "amount": _money(total_cents), "timestamp": _time(i, 5)}]
    if refunded:
        transactions.append({"id": doc_id(prefix + "txn", i * 10 + 1), "type": "Refund",
                             "state": "Success", "amount": _money(total_cents // 2),
                             "timestamp": _time(i, 60 * 24 * 3)})
    return {"id": doc_id(prefix + "payment", i), "version": 2,
            "amountPlanned": _money(total_cents),
            "paymentMethodInfo": {"paymentInterface": "psp", "method": "card"},
            "transactions": transactions, "createdAt": _time(i), "lastModifiedAt": _time(i, 5)}


def order(i: int, customers: int, *, prefix: str = "", lines: int = ORDER_LINES,
          product_pool: int = ORDER_PRODUCT_POOL) -> tuple[Doc, Doc]:
    """(order, its payment)."""
    c = i % max(1, customers)
    line_items = [_line(prefix, i, j, product_pool) for j in range(lines)]
    shipping = 495
    total = sum(li["totalPrice"]["centAmount"] for li in line_items) + shipping
    state, shipment, refunded = order_state(i)
    pay = payment(i, total, refunded, prefix)
    city, postal = CITIES[c % len(CITIES)]
    address = {"firstName": FIRST_NAMES[c % len(FIRST_NAMES)],
               "lastName": LAST_NAMES[c % len(LAST_NAMES)], "streetName": "Hauptstrasse",
               "streetNumber": str(c % 200 + 1), "postalCode": postal, "city": city,
               "country": "DE"}
    doc = {
        "id": doc_id(prefix + "order", i), "version": 4, "orderNumber": f"{prefix}B{i:07d}",
        "customerId": doc_id(prefix + "customer", c), "customerEmail": customer_email(prefix, c),
        "createdAt": _time(i), "lastModifiedAt": _time(i, 60 * 24),
        "orderState": state, "shipmentState": shipment, "paymentState": "Paid",
        "totalPrice": _money(total),
        "taxedPrice": {"totalNet": _money(total * 100 // 119), "totalGross": _money(total),
                       "totalTax": _money(total - total * 100 // 119)},
        "lineItems": line_items, "customLineItems": [],
        "shippingInfo": {"shippingMethodName": "Standard", "price": _money(shipping),
                         "shippingRate": {"price": _money(shipping)},
                         "shippingMethodState": "MatchesCart"},
        "shippingMode": "Single", "shipping": [],
        "billingAddress": address, "shippingAddress": address,
        "paymentInfo": {"payments": [{"typeId": "payment", "id": pay["id"]}]},
        "country": "DE", "origin": "Customer", "inventoryMode": "None",
        "taxMode": "Platform", "taxRoundingMode": "HalfEven", "refusedGifts": [],
        "syncInfo": [], "returnInfo": [], "discountCodes": [], "itemShippingAddresses": [],
    }
    return doc, pay


# ---- realtime deliveries --------------------------------------------------------------------


def message(resource_type: str, resource_id: str, message_type: str, seq: int,
            **payload: Any) -> Doc:
    """A commercetools Message delivery (Platform format), as a subscription sends it."""
    return {
        "notificationType": "Message", "projectKey": PROJECT_KEY,
        "id": doc_id("message", seq), "version": 1, "sequenceNumber": 1,
        "resource": {"typeId": resource_type, "id": resource_id}, "resourceVersion": 1,
        "resourceUserProvidedIdentifiers": {}, "type": message_type,
        "createdAt": "2026-01-01T00:00:00.000Z", "lastModifiedAt": "2026-01-01T00:00:00.000Z",
        **payload,
    }


RT_PREFIX = "rt-"


def rt_customer_created(i: int) -> Doc:
    doc = customer(i, RT_PREFIX)
    return message("customer", doc["id"], "CustomerCreated", i, customer=doc)


def rt_order_created(i: int, customers: int) -> Doc:
    doc, _ = order(i, customers, prefix=RT_PREFIX, lines=RT_ORDER_LINES, product_pool=100)
    return message("order", doc["id"], "OrderCreated", 10_000_000 + i, order=doc)


def rt_product_published(i: int) -> Doc:
    doc = product(i, RT_PREFIX, RT_PRODUCT_VARIANTS)
    projection = {k: v for k, v in doc.items() if k != "masterData"}
    projection.update(doc["masterData"]["current"])
    projection.update(published=True, hasStagedChanges=False)
    return message("product", doc["id"], "ProductPublished", 20_000_000 + i,
                   productProjection=projection, removedImageUrls=[], scope="All")


def rt_order_state_changed(i: int, customers: int) -> Doc:
    """The order reached Complete (the message's state: a Fulfilled Order)."""
    doc, _ = order(i, customers, prefix=RT_PREFIX, lines=RT_ORDER_LINES, product_pool=100)
    return message("order", doc["id"], "OrderStateChanged", 30_000_000 + i,
                   orderState="Complete", oldOrderState="Open")


def rt_refund_succeeded(i: int, customers: int) -> Doc:
    """A Refund transaction reached Success (orders with index 4 mod 10 carry one)."""
    k = (i * 10 + 4) % max(10, customers - customers % 10)
    doc, pay = order(k, customers, prefix=RT_PREFIX, lines=RT_ORDER_LINES, product_pool=100)
    refund = next(t for t in pay["transactions"] if t["type"] == "Refund")
    return message("payment", pay["id"], "PaymentTransactionStateChanged", 40_000_000 + i,
                   transactionId=refund["id"], state="Success")


def rt_category_updated(i: int) -> Doc:
    """A change notification for a root category (it has CATEGORY_CHILDREN descendants)."""
    return {"notificationType": "ResourceUpdated", "projectKey": PROJECT_KEY,
            "resource": {"typeId": "category", "id": doc_id("category", i % CATEGORY_ROOTS)},
            "version": 2, "oldVersion": 1, "modifiedAt": "2026-01-02T00:00:00.000Z"}
