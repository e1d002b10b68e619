"""Our own thin Klaviyo API client (not the `klaviyo-api` SDK), on `requests`.

Every request goes through one pooled `requests.Session` per client (`shared/http.py`: no
retries or redirects inside `requests`); `transport.py` adds the JSON:API error handling, the
rate limiter (`limiter.py`) and the deadline-bounded retries (`shared/retry.py`). The client
(`client.py`: profiles and events; catalog, bulk jobs and privacy as mixins) is checked against
Klaviyo's OpenAPI document for the pinned revision. `batches.py` and `catalog_jobs.py` hold the
bulk-request machinery both functions use (chunking, isolating refused records, catalog jobs).
"""

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
