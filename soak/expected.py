"""The Klaviyo state commercetools' data implies, and its comparison with the Klaviyo fake.

The expected state is computed from what the commercetools fake serves, read with the
connector's own client and expansions and mapped with its own mappers (profiles, order events,
catalog items, variants and categories), so a soak checks delivery (nothing missing, nothing
twice, nothing stale or left over), not the mapping tables, which the unit tests cover.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from shared.commercetools.client import CommercetoolsClient
from shared.commercetools.models.category import Category
from shared.commercetools.models.customer import Customer
from shared.commercetools.models.order import Order
from shared.commercetools.models.product import Product
from shared.config import Settings
from shared.klaviyo.catalog import catalog_id
from shared.mapping.catalog import (
    CatalogConfig,
    item_attributes,
    split_variants,
    variant_attributes,
)
from shared.mapping.catalog_categories import category_attributes
from shared.mapping.customers import map_profile
from shared.mapping.orders import OrderMappingConfig, expanded_payments, order_events, order_profile
from shared.mapping.products import category_ids, product_ids, product_lookup

Doc = dict[str, Any]
# What the processors expand (shared/processors/catalog.py, orders.py).
CATEGORY_EXPAND = ("ancestors[*]",)
PRODUCT_EXPAND = ("masterData.current.categories[*]",)
ORDER_EXPAND = ("paymentInfo.payments[*]",)


@dataclass
class KlaviyoState:
    """Profiles by identity (`external_id:<id>` or `email:<address>`), events by
    (identity, metric, unique_id), catalog objects by external id."""

    profiles: dict[str, Doc] = field(default_factory=dict)
    events: dict[tuple[str, str, str], Doc] = field(default_factory=dict)
    items: dict[str, tuple[Doc, Doc]] = field(default_factory=dict)  # (attributes, relationships)
    variants: dict[str, tuple[Doc, Doc]] = field(default_factory=dict)
    categories: dict[str, Doc] = field(default_factory=dict)
    invalid: Counter[str] = field(default_factory=Counter)  # CT documents that fail validation

    def sizes(self) -> dict[str, int]:
        return {"profiles": len(self.profiles), "events": len(self.events),
                "items": len(self.items), "variants": len(self.variants),
                "categories": len(self.categories)}


def _all(ct: CommercetoolsClient, resource: str, expand: Iterable[str] = ()) -> list[Doc]:
    return [doc for page in ct.iter_pages(resource, expand=tuple(expand)) for doc in page]


def _identity(profile: Doc) -> str:
    if profile.get("external_id"):
        return f"external_id:{profile['external_id']}"
    return f"email:{str(profile.get('email', '')).casefold()}"


def expected_state(ct: CommercetoolsClient, settings: Settings, *, orders: bool = True,
                   catalog: bool = True) -> KlaviyoState:
    state = KlaviyoState()
    for doc in _all(ct, "customers"):
        try:
            customer = Customer.model_validate(doc)
        except ValidationError:
            state.invalid["customers"] += 1
            continue
        if customer.email:
            attributes = map_profile(customer, include=settings.customer_properties_include,
                                     exclude=settings.customer_properties_exclude)
            state.profiles[_identity(attributes)] = attributes
    if catalog:
        _catalog(ct, settings, state)
    if orders:
        _orders(ct, settings, state)
    return state


def _catalog(ct: CommercetoolsClient, settings: Settings, state: KlaviyoState) -> None:
    locale = settings.preferred_locale
    for doc in _all(ct, "categories", CATEGORY_EXPAND):
        category = Category.model_validate(doc)
        state.categories[category.id] = category_attributes(category, locale)
    config = CatalogConfig.from_settings(settings)
    for doc in _all(ct, "products", PRODUCT_EXPAND):
        try:
            product = Product.model_validate(doc)
        except ValidationError:
            state.invalid["products"] += 1
            continue
        if not product.master_data.published:
            continue
        state.items[product.id] = item_attributes(product, config)
        variants, _ = split_variants(product.master_data.current)
        for variant in variants:
            state.variants[variant.sku or ""] = variant_attributes(product, variant, config)


def _orders(ct: CommercetoolsClient, settings: Settings, state: KlaviyoState) -> None:
    config = OrderMappingConfig.from_settings(settings)
    for doc in _all(ct, "orders", ORDER_EXPAND):
        try:
            order = Order.model_validate(doc)
        except ValidationError:
            state.invalid["orders"] += 1
            continue
        ids = product_ids(order)
        products = ct.get_by_ids("products", ids) if ids else []
        wanted = category_ids(products)
        categories = ct.get_by_ids("categories", wanted, expand=CATEGORY_EXPAND) if wanted else []
        lookup = product_lookup(products, categories, locale=config.locale)
        events = order_events(order, expanded_payments(order), lookup, config)
        profile = order_profile(order, with_location=True)
        if profile is not None and not order.customer_id:  # a guest: a profile by email
            state.profiles.setdefault(_identity(profile), profile)
        for event in events:
            identity = _identity(event.profile)
            state.events[(identity, event.metric, event.unique_id)] = {
                "value": event.value, "value_currency": event.value_currency,
                "properties": json.loads(json.dumps(event.properties)),
            }


def klaviyo_state(fake: Any) -> tuple[KlaviyoState, list[str]]:
    """The Klaviyo fake's state in the same shape; plus duplicates found while reading it."""
    state = KlaviyoState()
    duplicates: list[str] = []
    by_id: dict[str, str] = {}
    for pid, profile in fake.profiles.items():
        attributes = profile["attributes"]
        identity = _identity(attributes)
        if identity in state.profiles:
            duplicates.append(f"profile {identity} twice")
        state.profiles[identity] = attributes
        by_id[pid] = identity
    for event in fake.events:
        key = (by_id.get(event["profile_id"], event["profile_id"]), event["metric"],
               event["unique_id"] or f"<no unique_id {event['time']}>")
        if key in state.events:
            duplicates.append(f"event {key} twice")
        state.events[key] = {"value": event["value"], "value_currency": event["value_currency"],
                             "properties": event["properties"]}
    per_unique = Counter((e["metric"], e["unique_id"]) for e in fake.events)
    duplicates += [f"event {metric}/{unique} recorded {n} times"
                   for (metric, unique), n in per_unique.items() if n > 1]
    for cid, obj in fake.items.items():
        state.items[_external(cid)] = (obj["attributes"], obj["relationships"])
    for cid, obj in fake.variants.items():
        state.variants[_external(cid)] = (obj["attributes"], obj["relationships"])
    for cid, obj in fake.categories.items():
        state.categories[_external(cid)] = obj["attributes"]
    return state, duplicates


def _external(klaviyo_id: str) -> str:
    return klaviyo_id.split(":::", 2)[-1]


@dataclass
class Comparison:
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.missing) + len(self.stale) + len(self.unexpected) + len(self.duplicates)

    def summary(self) -> str:
        return (f"missing {len(self.missing)}, duplicate {len(self.duplicates)}, "
                f"stale {len(self.stale)}, unexpected {len(self.unexpected)}")

    def details(self, limit: int = 15) -> list[str]:
        lines = []
        for name in ("missing", "duplicates", "stale", "unexpected"):
            for entry in getattr(self, name)[:limit]:
                lines.append(f"{name}: {entry}")
        return lines


def _differs(expected: Any, actual: Any) -> bool:
    """Expected attributes must be present and equal; dicts (location, properties, custom
    metadata) may hold more keys than expected (Klaviyo merges them)."""
    if isinstance(expected, dict):
        return not isinstance(actual, dict) or any(
            _differs(v, actual.get(k)) for k, v in expected.items())
    if isinstance(expected, float) or isinstance(actual, float):
        try:
            return abs(float(expected) - float(actual)) > 1e-9
        except (TypeError, ValueError):
            return True
    return expected != actual


def _attribute_diff(expected: Doc, actual: Doc) -> list[str]:
    return [k for k, v in expected.items() if _differs(v, actual.get(k))]


def _relationship_ids(relationships: Doc, name: str) -> set[str]:
    data = (relationships.get(name) or {}).get("data")
    if isinstance(data, dict):
        return {data["id"]}
    return {entry["id"] for entry in data or []}


def compare(expected: KlaviyoState, actual: KlaviyoState, *, compare_events: bool = True,
            profile_keys: Iterable[str] | None = None) -> Comparison:
    result = Comparison()
    for identity, attributes in expected.profiles.items():
        have = actual.profiles.get(identity)
        if have is None:
            result.missing.append(f"profile {identity}")
            continue
        stale = _attribute_diff(attributes, have)
        if stale:
            result.stale.append(f"profile {identity}: {', '.join(stale)}")
    for identity in actual.profiles.keys() - expected.profiles.keys():
        result.unexpected.append(f"profile {identity}")
    if compare_events:
        for key, event in expected.events.items():
            have = actual.events.get(key)
            if have is None:
                result.missing.append(f"event {key}")
                continue
            stale = _attribute_diff(event, have)
            if stale:
                result.stale.append(f"event {key}: {', '.join(stale)}")
        for key in actual.events.keys() - expected.events.keys():
            result.unexpected.append(f"event {key}")
    for kind, relation in (("items", "categories"), ("variants", "item")):
        want, have = getattr(expected, kind), getattr(actual, kind)
        for ext, (attributes, relationships) in want.items():
            if ext not in have:
                result.missing.append(f"{kind[:-1]} {ext}")
                continue
            got_attributes, got_relationships = have[ext]
            stale = [k for k in _attribute_diff(attributes, got_attributes) if k != "external_id"]
            wanted_ids = _relationship_ids(relationships, relation)
            got = got_relationships.get(relation)
            got_ids = set(got) if isinstance(got, list) else ({got} if got else set())
            if wanted_ids != got_ids:
                stale.append(f"relationships.{relation}")
            if stale:
                result.stale.append(f"{kind[:-1]} {ext}: {', '.join(stale)}")
        for ext in have.keys() - want.keys():
            result.unexpected.append(f"{kind[:-1]} {ext} (should not be in Klaviyo)")
    for ext, attributes in expected.categories.items():
        if ext not in actual.categories:
            result.missing.append(f"category {ext}")
        elif _attribute_diff(attributes, actual.categories[ext]):
            result.stale.append(f"category {ext}: name")
    for ext in actual.categories.keys() - expected.categories.keys():
        result.unexpected.append(f"category {ext} (should not be in Klaviyo)")
    return result


def catalog_ids(state: KlaviyoState) -> dict[str, set[str]]:
    """Compound Klaviyo ids of the state's catalog objects (for seeding)."""
    return {"items": {catalog_id(e) for e in state.items},
            "variants": {catalog_id(e) for e in state.variants},
            "categories": {catalog_id(e) for e in state.categories}}


def group_events(state: KlaviyoState) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for _, metric, _ in state.events:
        counts[metric] += 1
    return dict(counts)
