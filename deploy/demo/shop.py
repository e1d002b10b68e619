"""The demo shop: a small, realistic commercetools project, deterministic (uuid5 ids), so the
README's examples name records that exist in every demo.

Customers with addresses in several countries and custom fields, a category tree, products with
variants, prices in EUR, USD and GBP and stock, orders in several states with payments (refunds
among them). Shapes are commercetools' API documents, as the connector reads them.
"""

from __future__ import annotations

import uuid
from typing import Any

Doc = dict[str, Any]

PROJECT_KEY = "demo-shop"
_NS = uuid.UUID("0b6f3f0e-5d0c-4d3e-8a55-7e0f2f4a9d10")

FIRST = ("Anna", "Ben", "Chloé", "David", "Emma", "Farid", "Greta", "Hiro", "Ines", "Jonas",
         "Kate", "Luca", "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sam", "Tara")
LAST = ("Schmidt", "Miller", "Dubois", "Rossi", "Novak", "García", "Khan", "Tanaka", "Jensen",
        "O'Brien", "Weber", "Silva", "Murphy", "Kowalski", "Larsen", "Moreau")
PLACES = (
    ("DE", "Berlin", "10115", "Torstraße", None, "+49 30 9018 "),
    ("US", "Portland", "97205", "SW Morrison St", "OR", "+1 503 555 "),
    ("GB", "Manchester", "M1 1AE", "Deansgate", None, "+44 161 496 "),
    ("FR", "Lyon", "69002", "Rue de la République", None, "+33 4 72 10 "),
    ("US", "Austin", "78701", "Congress Ave", "TX", "+1 512 555 "),
)
CURRENCY = {"DE": "EUR", "FR": "EUR", "US": "USD", "GB": "GBP"}
TIERS = ("bronze", "silver", "gold")

CUSTOMERS = 240
ORDERS = 480


def doc_id(kind: str, i: int | str) -> str:
    return str(uuid.uuid5(_NS, f"{kind}-{i}"))


def _money(cents: int, currency: str = "EUR") -> Doc:
    return {"type": "centPrecision", "currencyCode": currency, "centAmount": cents,
            "fractionDigits": 2}


def _time(day: int, minute: int = 0) -> str:
    month, mday = divmod(day % 336, 28)
    hour, minute = divmod(minute % (24 * 60), 60)
    return f"2026-{month + 1:02d}-{mday + 1:02d}T{hour:02d}:{minute:02d}:00.000Z"


# ---- customers --------------------------------------------------------------------------------


def _email(i: int) -> str:
    first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    local = f"{first}.{last}".lower().replace("'", "").replace("é", "e").replace("í", "i")
    return f"{local}{'' if i < len(FIRST) * len(LAST) else i}@example.com"


def customer(i: int) -> Doc:
    first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    country, city, postal, street, region, phone = PLACES[i % len(PLACES)]
    billing = f"addr-{i}-billing"
    address: Doc = {"id": billing, "firstName": first, "lastName": last, "streetName": street,
                    "streetNumber": str(i % 90 + 1), "postalCode": postal, "city": city,
                    "country": country, "phone": f"{phone}{i:04d}", "email": _email(i)}
    if region:
        address["state"] = region
    addresses = [address]
    if i % 5 == 0:  # a separate shipping address (an office)
        addresses.append({"id": f"addr-{i}-shipping", "firstName": first, "lastName": last,
                          "streetName": street, "streetNumber": "200", "building": "Office 4",
                          "postalCode": postal, "city": city, "country": country})
    doc: Doc = {
        "id": doc_id("customer", i), "version": 2, "key": f"customer-{i}",
        "customerNumber": f"C{10000 + i}", "email": _email(i), "firstName": first,
        "lastName": last, "addresses": addresses, "defaultBillingAddressId": billing,
        "billingAddressIds": [billing], "shippingAddressIds": [a["id"] for a in addresses],
        "isEmailVerified": i % 7 != 0, "authenticationMode": "Password",
        "locale": {"DE": "de-DE", "FR": "fr-FR", "GB": "en-GB", "US": "en-US"}[country],
        "createdAt": _time(i // 3, i * 37), "lastModifiedAt": _time(i // 3 + 2, i * 41),
        "custom": {"type": {"typeId": "type", "id": doc_id("type", "customer-fields")},
                   "fields": {"loyaltyTier": TIERS[i % 3], "newsletter": i % 2 == 0,
                              "favouriteCategory": ("women", "men", "home")[i % 3]}},
    }
    if i % 9 == 0:
        doc["companyName"] = f"{last} & Partners"
    if i % 11 == 0:
        doc["title"] = "Dr."
    return doc


# ---- catalog ----------------------------------------------------------------------------------

# (key, parent key, English name, German name)
CATEGORIES = (
    ("women", None, "Women", "Damen"), ("women-tops", "women", "Tops", "Oberteile"),
    ("women-pants", "women", "Pants", "Hosen"), ("women-jeans", "women-pants", "Jeans", "Jeans"),
    ("men", None, "Men", "Herren"), ("men-shirts", "men", "Shirts", "Hemden"),
    ("men-jackets", "men", "Jackets", "Jacken"),
    ("home", None, "Home", "Wohnen"), ("home-kitchen", "home", "Kitchen", "Küche"),
    ("sale", None, "Sale", "Sale"),
)

# (key, name, description, category keys, base price in cents, variant axes)
PRODUCTS = (
    ("linen-shirt", "Linen Shirt", "Breathable washed linen, relaxed fit.", ("men-shirts",),
     5900, ("white", "sand", "navy"), ("S", "M", "L")),
    ("oxford-shirt", "Oxford Button-Down", "Heavy oxford cotton that softens with every wash.",
     ("men-shirts", "sale"), 6900, ("blue", "white"), ("M", "L", "XL")),
    ("waxed-jacket", "Waxed Field Jacket", "Water-repellent waxed cotton with a cord collar.",
     ("men-jackets",), 21900, ("olive", "black"), ("M", "L")),
    ("silk-blouse", "Silk Blouse", "Sand-washed silk, mother-of-pearl buttons.", ("women-tops",),
     11900, ("ivory", "black"), ("XS", "S", "M")),
    ("merino-tee", "Merino T-Shirt", "Fine 150 g merino jersey for every season.",
     ("women-tops", "sale"), 4900, ("grey", "black", "rust"), ("S", "M", "L")),
    ("wide-trousers", "Wide-Leg Trousers", "Pleated wool blend with a high waist.",
     ("women-pants",), 12900, ("camel", "charcoal"), ("34", "36", "38")),
    ("straight-jeans", "Straight Jeans", "Rigid organic denim, mid rise.", ("women-jeans",),
     9900, ("indigo", "black"), ("26", "28", "30")),
    ("chef-knife", "Chef's Knife 20 cm", "Hand-forged carbon steel, walnut handle.",
     ("home-kitchen",), 14900, ("walnut",), ("20cm",)),
    ("stoneware-set", "Stoneware Dinner Set", "Four plates and four bowls, reactive glaze.",
     ("home-kitchen", "sale"), 8900, ("sage", "slate"), ("4pc",)),
    ("linen-napkins", "Linen Napkins (4)", "Stonewashed linen, 45 × 45 cm.", ("home",),
     2900, ("natural", "terracotta", "blue"), ("45cm",)),
)


def categories() -> list[Doc]:
    ids = {key: doc_id("category", key) for key, *_ in CATEGORIES}
    parents = {key: parent for key, parent, *_ in CATEGORIES}
    docs = []
    for n, (key, parent, en, de) in enumerate(CATEGORIES):
        chain: list[dict[str, str]] = []
        up = parent
        while up is not None:
            chain.insert(0, {"typeId": "category", "id": ids[up]})
            up = parents[up]
        doc: Doc = {"id": ids[key], "version": 1, "key": key, "name": {"en": en, "de": de},
                    "slug": {"en": key, "de": key}, "ancestors": chain,
                    "orderHint": f"0.{n + 1}", "createdAt": _time(0), "lastModifiedAt": _time(0)}
        if parent is not None:
            doc["parent"] = {"typeId": "category", "id": ids[parent]}
        docs.append(doc)
    return docs


def sku(product_key: str, color: str, size: str) -> str:
    return f"{product_key}-{color}-{size}".upper()


def _variants(p: int) -> list[Doc]:
    key, _, _, _, cents, colors, sizes = PRODUCTS[p]
    variants: list[Doc] = []
    for c, color in enumerate(colors):
        for s, size in enumerate(sizes):
            n = len(variants) + 1
            price = cents + s * 500
            variants.append({
                "id": n, "sku": sku(key, color, size), "key": f"{key}-{n}",
                "prices": [
                    {"id": doc_id("price", f"{key}-{n}-eur"), "value": _money(price)},
                    {"id": doc_id("price", f"{key}-{n}-usd"), "value": _money(price + 800, "USD"),
                     "country": "US"},
                    {"id": doc_id("price", f"{key}-{n}-gbp"),
                     "value": _money(price * 86 // 100, "GBP"), "country": "GB"},
                ],
                "images": [{"url": f"https://images.example.com/demo/{key}/{color}.jpg",
                            "dimensions": {"w": 1200, "h": 1500}}],
                "attributes": [{"name": "color", "value": color}, {"name": "size", "value": size}],
                "availability": {"isOnStock": (p + c + s) % 7 != 0,
                                 "availableQuantity": (p * 13 + c * 5 + s * 3) % 40},
            })
    return variants


def product(p: int) -> Doc:
    key, name, description, cats, *_ = PRODUCTS[p]
    variants = _variants(p)
    data = {
        "name": {"en": name}, "description": {"en": description}, "slug": {"en": key},
        "categories": [{"typeId": "category", "id": doc_id("category", c)} for c in cats],
        "categoryOrderHints": {}, "masterVariant": variants[0], "variants": variants[1:],
        "searchKeywords": {},
    }
    return {
        "id": doc_id("product", key), "version": 4, "key": key,
        "productType": {"typeId": "product-type", "id": doc_id("product-type", "goods")},
        "masterData": {"published": True, "hasStagedChanges": False, "current": data,
                       "staged": data},
        "createdAt": _time(1), "lastModifiedAt": _time(3),
    }


def inventory() -> list[Doc]:
    entries = []
    for p in range(len(PRODUCTS)):
        for v in _variants(p):
            entries.append({"id": doc_id("inventory", v["sku"]), "version": 1, "sku": v["sku"],
                            "quantityOnStock": v["availability"]["availableQuantity"],
                            "availableQuantity": v["availability"]["availableQuantity"],
                            "createdAt": _time(1), "lastModifiedAt": _time(3)})
    return entries


# ---- orders -----------------------------------------------------------------------------------

# By i mod 10: 0 cancelled; 1-3 complete + delivered; 4 complete, delivered and half refunded;
# 5 confirmed + shipped; 6-9 open.
def order_state(i: int) -> tuple[str, str, bool]:
    slot = i % 10
    if slot == 0:
        return "Cancelled", "Pending", False
    if slot <= 4:
        return "Complete", "Delivered", slot == 4
    if slot == 5:
        return "Confirmed", "Shipped", False
    return "Open", "Pending", False


def _line(i: int, j: int, currency: str) -> Doc:
    p = (i * 7 + j * 3) % len(PRODUCTS)
    variants = _variants(p)
    v = variants[(i + j) % len(variants)]
    price = next(pr for pr in v["prices"] if pr["value"]["currencyCode"] == currency
                 ) if any(pr["value"]["currencyCode"] == currency for pr in v["prices"]) \
        else v["prices"][0]
    quantity = 1 + (i + j) % 2
    cents = price["value"]["centAmount"]
    key, name = PRODUCTS[p][0], PRODUCTS[p][1]
    return {
        "id": doc_id("line", f"{i}-{j}"), "productId": doc_id("product", key),
        "productKey": key, "name": {"en": name}, "productSlug": {"en": key},
        "productType": {"typeId": "product-type", "id": doc_id("product-type", "goods")},
        "variant": {"id": v["id"], "sku": v["sku"], "images": v["images"],
                    "attributes": v["attributes"]},
        "price": price, "quantity": quantity, "totalPrice": _money(cents * quantity, currency),
        "discountedPricePerQuantity": [],
        "state": [{"quantity": quantity, "state": {"typeId": "state", "id": "initial"}}],
        "priceMode": "Platform", "lineItemMode": "Standard",
    }


def order(i: int) -> tuple[Doc, Doc]:
    """(order, its payment)."""
    c = (i * 5) % CUSTOMERS
    cust = customer(c)
    billing = dict(cust["addresses"][0])
    billing.pop("id", None)
    currency = CURRENCY[billing["country"]]
    lines = [_line(i, j, currency) for j in range(1 + i % 3)]
    shipping = 495 if currency != "USD" else 599
    total = sum(li["totalPrice"]["centAmount"] for li in lines) + shipping
    state, shipment, refunded = order_state(i)
    created = _time(i // 2 + 10, i * 53)
    transactions = [{"id": doc_id("txn", f"{i}-charge"), "type": "Charge", "state": "Success",
                     "amount": _money(total, currency), "timestamp": created}]
    if refunded:
        transactions.append({"id": doc_id("txn", f"{i}-refund"), "type": "Refund",
                             "state": "Success", "amount": _money(total // 2, currency),
                             "timestamp": _time(i // 2 + 14, i * 53)})
    pay = {"id": doc_id("payment", i), "version": 2, "amountPlanned": _money(total, currency),
           "paymentMethodInfo": {"paymentInterface": "demo-psp", "method": "card"},
           "transactions": transactions, "createdAt": created, "lastModifiedAt": created}
    doc = {
        "id": doc_id("order", i), "version": 3, "orderNumber": f"DEMO-{100000 + i}",
        "customerId": cust["id"], "customerEmail": cust["email"], "locale": cust["locale"],
        "createdAt": created, "lastModifiedAt": _time(i // 2 + 12, i * 53),
        "orderState": state, "shipmentState": shipment,
        "paymentState": "Paid" if state != "Cancelled" else "Failed",
        "totalPrice": _money(total, currency),
        "taxedPrice": {"totalNet": _money(total * 100 // 119, currency),
                       "totalGross": _money(total, currency),
                       "totalTax": _money(total - total * 100 // 119, currency)},
        "lineItems": lines, "customLineItems": [],
        "shippingInfo": {"shippingMethodName": "Standard", "price": _money(shipping, currency),
                         "shippingRate": {"price": _money(shipping, currency)},
                         "shippingMethodState": "MatchesCart"},
        "shippingMode": "Single", "shipping": [],
        "billingAddress": billing, "shippingAddress": billing,
        "paymentInfo": {"payments": [{"typeId": "payment", "id": pay["id"]}]},
        "country": billing["country"], "origin": "Customer", "inventoryMode": "None",
        "taxMode": "Platform", "taxRoundingMode": "HalfEven", "refusedGifts": [],
        "syncInfo": [], "returnInfo": [], "discountCodes": [], "itemShippingAddresses": [],
    }
    return doc, pay


def load(ct: Any) -> dict[str, int]:
    """Fill a FakeCommercetools with the shop; returns how many of each were stored."""
    for doc in categories():
        ct.add("categories", doc)
    for p in range(len(PRODUCTS)):
        ct.add("products", product(p))
    for entry in inventory():
        ct.add("inventory", entry)
    for i in range(CUSTOMERS):
        ct.add("customers", customer(i))
    for i in range(ORDERS):
        doc, pay = order(i)
        ct.add("payments", pay)
        ct.add("orders", doc)
    return {"categories": len(CATEGORIES), "products": len(PRODUCTS), "customers": CUSTOMERS,
            "orders": ORDERS}
