"""schemathesis against deploy/openapi.yaml and the bulk HTTP function (`bulk/main.py:sync_api`
under functions-framework, local mode, the fakes behind it): every operation, with valid and
invalid bodies and parameters. No 5xx; every 4xx is JSON with a clear `error` code and `message`;
every response conforms to the spec (status codes, content type, schema).

Derandomized, with a modest example count per operation for CI (API_FUZZ_EXAMPLES to go deeper).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckContext
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.config import get_settings

ROOT = Path(__file__).resolve().parents[1]
BULK_SOURCE = str(ROOT / "bulk" / "main.py")
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "25"))

schema = schemathesis.openapi.from_path(ROOT / "deploy" / "openapi.yaml")


@pytest.fixture(scope="module")
def sync_api(ct_server: Any, klaviyo_server: Any, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Any]:
    """The HTTP function in local mode (embedded job store and task queue) on the fakes."""
    from functions_framework import create_app

    saved = dict(os.environ)
    for name in ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
                 "K_SERVICE", "BULK_BACKEND"):
        os.environ.pop(name, None)
    os.environ.update({
        "CTP_PROJECT_KEY": ct_server.project_key, "CTP_CLIENT_ID": ct_server.client_id,
        "CTP_CLIENT_SECRET": ct_server.client_secret, "CTP_SCOPES": " ".join(ct_server.scopes),
        "CTP_API_URL": ct_server.url, "CTP_AUTH_URL": ct_server.auth_url,
        "KLAVIYO_API_KEY": klaviyo_server.api_key, "KLAVIYO_BASE_URL": klaviyo_server.url,
        "BULK_LOCAL_STATE_FILE": str(tmp_path_factory.mktemp("api-fuzz") / "state.json"),
        "BULK_JOB_POLL_SECONDS": "0.01", "BULK_MAX_IDS": "50", "BULK_MAX_BODY_BYTES": "4096",
    })
    get_settings.cache_clear()
    try:
        yield create_app("sync_api", BULK_SOURCE)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


def clear_errors(ctx: CheckContext, response: Any, case: Any) -> bool | None:
    """No 5xx; a 4xx is a JSON object naming the problem in `error` and `message`."""
    status = response.status_code
    assert status < 500, f"{case.method} {case.formatted_path} answered {status}: {response.text}"
    if status >= 400:
        body = response.json()
        assert isinstance(body, dict), body
        assert isinstance(body.get("error"), str) and body["error"], body
        assert isinstance(body.get("message"), str) and len(body["message"]) >= 10, body
    return None


CHECKS = [clear_errors, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_bulk_api_conforms_and_never_fails(case: Any, sync_api: Any) -> None:
    response = case.call(app=sync_api)
    case.validate_response(response, checks=CHECKS)
