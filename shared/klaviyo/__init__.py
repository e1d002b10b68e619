"""Klaviyo API client (our own, on `requests`)."""

from shared.klaviyo.bulk import MAX_BULK_EVENTS, MAX_BULK_PROFILES, MAX_CATALOG_BULK
from shared.klaviyo.catalog import CATALOG_ID_PREFIX, catalog_id, catalog_ref, catalog_resource
from shared.klaviyo.client import KlaviyoClient, filter_string

__all__ = [
    "CATALOG_ID_PREFIX",
    "MAX_BULK_EVENTS",
    "MAX_BULK_PROFILES",
    "MAX_CATALOG_BULK",
    "KlaviyoClient",
    "catalog_id",
    "catalog_ref",
    "catalog_resource",
    "filter_string",
]
