"""A fake Klaviyo API served over real HTTP, plus pytest fixtures.

It behaves like Klaviyo (revision 2026-07-15, per klaviyo/openapi) for what our client uses:
auth/revision/content-type checks, JSON:API errors with pointers, profile upsert by identifiers
(409 duplicate_profile when they belong to two profiles), event dedup by (profile, metric,
unique_id), catalog CRUD with required-attribute checks and cursor paging, and bulk jobs that are
`queued`/`processing` before `complete`. Faults (429 with Retry-After, 5xx, slow answers, dropped
connections) are injected per path.

State is public so tests can assert on it: `profiles`/`items`/`variants`/`categories` hold JSON:API
shaped resources (`{"type", "id", "attributes", "relationships"}`), `events` holds one record per
distinct event, `requests` holds every request received (including faulted and duplicate ones).
Consent and GDPR: profile subscription bulk create/delete jobs (body validation incl. the
`consented_at` ⇔ `historical_import` rule) fill `consents` and `list_members`; data-privacy deletion
jobs delete every matching profile at once (Klaviyo: asynchronously) and log `deletion_jobs`.

Load it with `pytest_plugins = ["tests.fakes.klaviyo"]`; fixtures: `klaviyo_server` (session),
`klaviyo` (function: the fake, reset), `klaviyo_client` (a KlaviyoClient pointed at it).

Layout (one module per API family; one request log, one fault injector, one JSON:API error helper):
`server` (WSGI app, routing, lifecycle), `profiles`, `events`, `catalog`, `jobs` (bulk jobs),
`privacy` (consent and deletion), `faults`, `log`, `errors`, `filters`, `state` (shared
constants), `spec` (every request checked against Klaviyo's OpenAPI document; `schema`: its
schemas as strict validators), `fixtures` (incl. the refusal guard).
"""

from tests.fakes.klaviyo.errors import JSONAPI, ApiFailure, error_object
from tests.fakes.klaviyo.faults import Fault
from tests.fakes.klaviyo.filters import parse_filter
from tests.fakes.klaviyo.fixtures import (
    klaviyo,
    klaviyo_client,
    klaviyo_server,
    pytest_configure,
)
from tests.fakes.klaviyo.log import RecordedRequest
from tests.fakes.klaviyo.server import FakeKlaviyo
from tests.fakes.klaviyo.state import IDENTIFIERS, MATCHED_IDENTIFIERS

__all__ = ["IDENTIFIERS", "JSONAPI", "MATCHED_IDENTIFIERS", "ApiFailure", "FakeKlaviyo", "Fault",
           "RecordedRequest", "error_object", "klaviyo", "klaviyo_client", "klaviyo_server",
           "parse_filter", "pytest_configure"]
