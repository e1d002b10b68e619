"""The /sync API: request validation, routing, status codes and the status view (embedded store,
in-test exporter), plus the HTTP layer of `bulk/main.py:sync_api` through functions-framework."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app

from shared.bulk.api import ROUTES, BulkApi
from shared.bulk.base import Kind
from shared.bulk.runner import Runner
from shared.config import get_settings
from shared.state import JobStatus, MemoryStore
from tests.bulk_helpers import ListExporter, drain, make_runner

BULK_SOURCE = str(Path(__file__).resolve().parents[1] / "bulk" / "main.py")


@pytest.fixture
def runner() -> Runner:
    exporters = {k: ListExporter(k, [f"{k[:3]}-{i}" for i in range(5)], page=2)
                 for k in ("customers", "orders", "categories", "products")}
    return make_runner(MemoryStore(), exporters)


@pytest.fixture
def api(runner: Runner) -> BulkApi:
    return BulkApi(runner, max_ids=5, max_body_bytes=4096, clock=runner.clock)


def post(api: BulkApi, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    response = api.handle("POST", path, raw)
    return response.status, response.body


BAD_BODIES = [
    ("customers", b"{", "body is not valid JSON"),
    ("customers", b"\xff\xfe{}", "body is not UTF-8"),
    ("customers", b"[]", "body must be a JSON object, not an array"),
    ("customers", b'"ids"', "body must be a JSON object, not a string"),
    ("customers", b"null", "body must be a JSON object, not null"),
    ("customers", {"ids": "abc"}, "ids must be an array"),
    ("customers", {"ids": None}, "ids must be an array of ids"),
    ("customers", {"ids": []}, "ids must not be empty"),
    ("customers", {"ids": ["a", 7]}, "ids[1] must be a string"),
    ("customers", {"ids": ["a", ""]}, "ids[1] must not be empty"),
    ("customers", {"ids": ["  "]}, "ids[0] is blank"),
    ("customers", {"ids": ["a\nb"]}, "ids[0] contains a control character"),
    ("customers", {"ids": ["x" * 65]}, "ids[0] is longer than 64 characters"),
    ("orders", {"ids": [str(i) for i in range(6)]}, "ids has 6 items; at most 5"),
    ("orders", {"ids": ["a"], "startId": "b"}, "unknown field 'startId' (allowed: ids)"),
    ("customers", {"deleteAll": True}, "unknown field 'deleteAll'"),
    ("categories", {"ids": ["a"]}, "unknown field 'ids' (allowed: deleteAll, confirmDeletion)"),
    ("categories", {"deleteAll": True}, 'to confirm, send "confirmDeletion": "categories"'),
    ("categories", {"deleteAll": True, "confirmDeletion": "products"}, "deletes ALL categories"),
    ("products", {"deleteAll": True, "confirmDeletion": "Products"}, "deletes ALL products"),
    ("products", {"deleteAll": "true", "confirmDeletion": "products"},
     "deleteAll must be true or false"),
    ("products", {"deleteAll": 1, "confirmDeletion": "products"},
     "deleteAll must be true or false"),
    ("products", {"deleteAll": True, "confirmDeletion": 5}, "confirmDeletion must be a string"),
    ("products", {"confirmDeletion": "products"}, 'only accepted with "deleteAll": true'),
]


@pytest.mark.parametrize("kind, body, message", BAD_BODIES)
def test_bad_bodies_are_400_naming_the_problem(
    api: BulkApi, kind: Kind, body: Any, message: str
) -> None:
    status, payload = post(api, f"/sync/{kind}", body)
    assert status == 400, payload
    assert payload["error"] == "bad_request" and message in payload["message"]
    assert api.runner.latest(kind) is None  # nothing was started


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/", 404),
    ("GET", "/sync", 404),
    ("POST", "/sync/carts", 404),
    ("POST", "/sync/customers/start", 404),
    ("POST", "/sync/customers/stop/now", 404),
    ("GET", "/sync/jobs", 404),
    ("GET", "/sync/jobs/unknown-job", 404),
    ("GET", "/sync/jobs/bad%20id", 404),
    ("GET", "/other/customers", 404),
    ("DELETE", "/sync/customers", 405),
    ("PUT", "/sync/orders", 405),
    ("GET", "/sync/customers/stop", 405),
    ("POST", "/sync/jobs/abc", 405),
])
def test_unknown_paths_and_methods(api: BulkApi, method: str, path: str, status: int) -> None:
    response = api.handle(method, path, b"")
    assert response.status == status
    assert response.body["error"] == ("not_found" if status == 404 else "method_not_allowed")
    if status == 405:
        assert response.headers["Allow"]


def test_body_limit(api: BulkApi) -> None:
    response = api.handle("POST", "/sync/customers", b" " * 4097)
    assert response.status == 413 and response.body["error"] == "payload_too_large"


@pytest.mark.parametrize("kind, body", [
    ("customers", None), ("customers", b"  "), ("customers", {}),
    ("orders", {"ids": ["a", "a", "b"]}),
    ("categories", {"deleteAll": False}),
    ("categories", {"deleteAll": True, "confirmDeletion": "categories"}),
    ("products", {"deleteAll": True, "confirmDeletion": "products"}),
])
def test_accepted_bodies(api: BulkApi, kind: str, body: Any) -> None:
    status, payload = post(api, f"/sync/{kind}", body)
    assert status == 202, payload
    assert payload["jobId"] and payload["status"] == "queued"
    job = api.runner.job(payload["jobId"])
    assert job is not None and job.kind == kind
    if kind == "orders":
        assert api.runner.store.get_ids(job.id) == ["a", "b"]  # deduplicated, order kept
    assert job.deleteAll == bool(isinstance(body, dict) and body.get("deleteAll"))


def test_conflict_stop_and_status(api: BulkApi, runner: Runner) -> None:
    status, started = post(api, "/sync/customers")
    assert status == 202
    status, conflict = post(api, "/sync/customers")
    assert status == 409 and conflict["jobId"] == started["jobId"]
    assert conflict["error"] == "conflict"
    assert post(api, "/sync/orders")[0] == 202  # another kind runs in parallel

    drain(runner, limit=1)
    view = api.handle("GET", "/sync/customers").body
    assert view["jobId"] == started["jobId"] and view["status"] == "running"
    assert view["cursor"] == "cus-1" and view["counts"]["read"] == 2
    for field in ("startedAt", "updatedAt", "createdAt", "errors", "errorCount", "phase",
                  "leaseExpiresAt", "leaseExpired", "seq", "reason"):
        assert field in view
    assert api.handle("GET", f"/sync/jobs/{started['jobId']}").body == view

    stop = api.handle("POST", "/sync/customers/stop")
    assert stop.status == 200 and stop.body["status"] == "stopping"
    drain(runner)
    stopped = api.handle("GET", "/sync/customers").body
    assert stopped["status"] == "stopped" and stopped["finishedAt"]
    again = api.handle("POST", "/sync/customers/stop")  # after it ended: how it ended
    assert again.status == 200 and again.body["status"] == "stopped"
    assert again.body["message"] == "the job has ended: stopped"
    assert api.handle("POST", "/sync/products/stop").status == 404
    assert post(api, "/sync/customers")[0] == 202


def test_status_of_a_kind_that_never_ran(api: BulkApi) -> None:
    response = api.handle("GET", "/sync/products")
    assert response.status == 404 and "no products sync" in response.body["message"]


def test_status_shows_errors_without_pii(runner: Runner) -> None:
    exporter = runner.exporters("customers")
    assert isinstance(exporter, ListExporter)  # the runner fixture's
    exporter.bad = {"cus-3"}
    api = BulkApi(runner)
    job_id = post(api, "/sync/customers")[1]["jobId"]
    drain(runner)
    view = api.handle("GET", f"/sync/jobs/{job_id}").body
    assert view["status"] == JobStatus.COMPLETED.value
    assert view["counts"] == {"read": 5, "sent": 4, "skipped": 0, "failed": 1, "deleted": 0}
    assert view["errors"] == [{"ctId": "cus-3", "status": 400, "code": "invalid",
                               "pointer": "/data/x"}]
    assert "ids" not in view


def test_internal_error_is_json_500(api: BulkApi, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("store down")

    monkeypatch.setattr(api.runner, "start", boom)
    response = api.handle("POST", "/sync/customers")
    assert response.status == 500 and response.body["error"] == "internal"


def test_routes_cover_the_api() -> None:
    assert ("POST", "/sync/customers/stop") in ROUTES and ("GET", "/sync/jobs/{jobId}") in ROUTES
    assert len(ROUTES) == 4 * 3 + 1 + 1  # + GET /, the console


# ---- through functions-framework (local mode) ------------------------------------------------


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    env = {"CTP_PROJECT_KEY": "p", "CTP_CLIENT_ID": "c", "CTP_CLIENT_SECRET": "s",
           "CTP_API_URL": "http://127.0.0.1:9", "CTP_AUTH_URL": "http://127.0.0.1:9",
           "KLAVIYO_API_KEY": "k", "KLAVIYO_BASE_URL": "http://127.0.0.1:9",
           "BULK_MAX_BODY_BYTES": "2048", "BULK_LOCAL_STATE_FILE": str(tmp_path / "s.json")}
    for name in ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
                 "K_SERVICE", "BULK_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield create_app("sync_api", BULK_SOURCE).test_client()
    get_settings.cache_clear()


def test_http_layer(http: Any) -> None:
    response = http.post("/sync/customers", data=b'{"ids": [1]}',
                         content_type="application/json")
    assert response.status_code == 400 and response.is_json
    assert response.get_json()["message"] == "ids[0] must be a string"

    response = http.post("/sync/customers", data=b"x" * 2049)
    assert response.status_code == 413 and response.is_json

    # chunked (no Content-Length, as gunicorn passes it): the limit still holds
    response = http.post("/sync/customers", input_stream=io.BytesIO(b"x" * 5000),
                         environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    response = http.post("/sync/customers", input_stream=io.BytesIO(b'{"ids": {}}'),
                         environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 400 and response.get_json()["message"] == "ids must be an array"

    response = http.delete("/sync/orders")
    assert response.status_code == 405 and response.headers["Allow"] == "GET, POST, HEAD"
    assert response.is_json

    response = http.get("/sync/nothing")
    assert response.status_code == 404 and response.is_json
    response = http.get("/sync/categories")
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"
