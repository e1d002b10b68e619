"""deploy/openapi.yaml: a valid Swagger 2.0 API Gateway spec of exactly what the bulk function
serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from openapi_spec_validator.validation.validators import OpenAPIV2SpecValidator

from shared.bulk.api import ROUTES
from shared.config import get_settings

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "deploy" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in spec["paths"].items()
            for method, op in item.items() if method in METHODS]


def test_is_a_valid_swagger_2_document(spec: dict[str, Any]) -> None:
    assert spec["swagger"] == "2.0"
    validate(spec, cls=OpenAPIV2SpecValidator)


def test_the_validator_does_reject_a_broken_spec(spec: dict[str, Any]) -> None:
    broken = {**spec, "paths": {"/sync/customers": {"get": {"operationId": "x"}}}}  # no responses
    with pytest.raises(OpenAPIValidationError):
        validate(broken, cls=OpenAPIV2SpecValidator)


def test_paths_and_methods_are_exactly_the_bulk_routes(spec: dict[str, Any]) -> None:
    served = sorted(ROUTES)
    documented = sorted((method, path) for method, path, _ in operations(spec))
    assert documented == served


# API Gateway requires them
def test_every_operation_has_a_unique_operation_id(spec: dict[str, Any]) -> None:
    ids = [op.get("operationId") for _, _, op in operations(spec)]
    assert all(ids) and len(set(ids)) == len(ids)


def test_every_call_needs_a_google_id_token(spec: dict[str, Any]) -> None:
    definitions = spec["securityDefinitions"]
    token = definitions["google_id_token"]
    assert token["type"] == "oauth2" and token["x-google-issuer"] == "https://accounts.google.com"
    assert token["x-google-jwks_uri"] == "https://www.googleapis.com/oauth2/v3/certs"
    assert token["x-google-audiences"] == "BULK_API_AUDIENCE_PLACEHOLDER"
    # an API key only ever in a header (never ?key=, which lands in logs and shell history)
    keys = {(d["in"], d["name"]) for d in definitions.values() if d["type"] == "apiKey"}
    assert keys == {("header", "x-api-key")}
    assert [next(iter(r)) for r in spec["security"]] == ["google_id_token", "api_key_header"]
    # Only the console page opts out: it holds no data and a browser cannot send a token on
    # navigation; every API operation inherits the token requirement.
    assert {op["operationId"] for _, _, op in operations(spec) if "security" in op} == {
        "getConsole"}
    assert spec["paths"]["/"]["get"]["security"] == []
    text = SPEC_PATH.read_text()  # deploy.sh drops the API key alternative unless --api-key
    assert len([line for line in text.splitlines() if "API_KEY_OPTION" in line
                and line.strip().startswith("- api_key_header")]) == 1


def test_backend_is_the_placeholder_deploy_sh_replaces(spec: dict[str, Any]) -> None:
    backend = spec["x-google-backend"]
    assert backend["path_translation"] == "APPEND_PATH_TO_ADDRESS"  # /sync/... reaches the function
    placeholder = backend["address"]
    assert placeholder == "https://BULK_API_URL_PLACEHOLDER"
    deploy_sh = (ROOT / "deploy" / "deploy.sh").read_text()
    assert re.search(rf"s\|{re.escape(placeholder)}\|\$API_URL\|g", deploy_sh)


@pytest.fixture
def bulk_client(ct_env: dict[str, str], klaviyo: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from functions_framework import create_app

    for name, value in {**ct_env, "KLAVIYO_API_KEY": klaviyo.api_key,
                        "KLAVIYO_BASE_URL": klaviyo.url, "BULK_BACKEND": "local",
                        "BULK_LOCAL_STATE_FILE": ""}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield create_app("sync_api", str(ROOT / "bulk" / "main.py")).test_client()
    get_settings.cache_clear()


def test_the_function_answers_every_spec_route_and_404s_others(
    spec: dict[str, Any], bulk_client: Any
) -> None:
    for method, path, _ in operations(spec):
        url = path.replace("{jobId}", "0123abcd")
        # a body that is not an object: proves the route without starting a job
        response = bulk_client.open(url, method=method, data=b"[]",
                                    content_type="application/json")
        body = response.get_json(silent=True) or {}  # GET / is the console's HTML
        assert response.status_code != 405, (method, path)
        assert body.get("message") != "unknown path", (method, path)
        assert not str(body.get("message", "")).startswith("unknown kind"), (method, path)
    for unknown in ("/sync", "/sync/jobs", "/sync/customers/start", "/sync/carts", "/other"):
        response = bulk_client.get(unknown)
        assert response.status_code == 404, unknown
