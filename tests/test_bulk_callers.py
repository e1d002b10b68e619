"""Who may call the bulk API behind API Gateway (issue 18 §2, §3): the caller API Gateway forwards
in X-Apigateway-Api-Userinfo, BULK_CALLERS / BULK_ADMINS, 401/403, the audit lines and the job's
startedBy/stoppedBy. Through `bulk/main.py:sync_api` (functions-framework), with the embedded job
store and the commercetools and Klaviyo fakes over HTTP."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app

from shared.bulk.api import BulkApi, Caller, Unauthenticated, caller_from_userinfo, listed
from shared.config import get_settings
from shared.state import MemoryStore
from tests.bulk_helpers import ListExporter, drain, make_runner
from tests.test_bulk_e2e import add_categories, category_ids, fresh_rate_limiter

BULK_SOURCE = str(Path(__file__).resolve().parents[1] / "bulk" / "main.py")
ADMIN = "ops-admin@shop-project.iam.gserviceaccount.com"
OPERATOR = "alice@merchant.example"
STRANGER = "someone@gmail.com"  # Google signs ID tokens for any account: the gateway lets it in


def userinfo(email: str | None = None, **claims: Any) -> str:
    """What API Gateway forwards: the verified token's claims, base64url JSON without padding."""
    payload = {"iss": "https://accounts.google.com", "aud": "ct-klaviyo-bulk-api:demo",
               "sub": "1234567890", "iat": 1, "exp": 2, **claims}
    if email is not None:
        payload |= {"email": email, "email_verified": True}
    raw = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
    return raw.rstrip("=")


def as_(email: str | None) -> dict[str, str]:
    return {"X-Apigateway-Api-Userinfo": userinfo(email)} if email else {}


@pytest.fixture
def make_api(ct_env: dict[str, str], klaviyo: Any, monkeypatch: pytest.MonkeyPatch,
             tmp_path: Path) -> Iterator[Callable[..., Any]]:
    for name in ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
                 "K_SERVICE", "BULK_BACKEND"):
        monkeypatch.delenv(name, raising=False)

    def make(**env: str) -> Any:
        variables = {**ct_env, "KLAVIYO_API_KEY": klaviyo.api_key, "KLAVIYO_BASE_URL": klaviyo.url,
                     "BULK_LOCAL_STATE_FILE": str(tmp_path / "state.json"), "BULK_PAGE_SIZE": "2",
                     "BULK_JOB_POLL_SECONDS": "0.01", **env}
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        fresh_rate_limiter(monkeypatch)
        get_settings.cache_clear()
        klaviyo.job_status_sequence = []
        return create_app("sync_api", BULK_SOURCE).test_client()

    yield make
    get_settings.cache_clear()


GATEWAY = {"BULK_AUTH": "id-token",
           "BULK_CALLERS": f"{OPERATOR}, *@ci-project.iam.gserviceaccount.com",
           "BULK_ADMINS": ADMIN}


def wait_done(client: Any, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while (view := client.get(f"/sync/jobs/{job_id}", headers=headers).get_json())["status"] in (
            "queued", "running", "stopping"):
        assert time.monotonic() < deadline, view
        time.sleep(0.05)
    return view


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [dict(r.__dict__) for r in caplog.records if r.getMessage() == "bulk audit"]


def test_without_the_gateways_user_info_the_request_is_unauthenticated(
        make_api: Callable[..., Any]) -> None:
    client = make_api(**GATEWAY)
    for call in (lambda: client.get("/sync/customers"),
                 lambda: client.post("/sync/customers", json={"ids": ["c-1"]})):
        response = call()
        assert response.status_code == 401 and response.is_json
        assert response.get_json()["error"] == "unauthenticated"
        assert "print-identity-token" in response.get_json()["message"]
    # garbage in the header is not a caller either
    response = client.get("/sync/customers", headers={"X-Apigateway-Api-Userinfo": "%%%"})
    assert response.status_code == 401
    assert client.get("/sync/customers", headers=as_(OPERATOR)).status_code == 404  # no job yet


def test_a_verified_google_account_not_listed_is_refused(make_api: Callable[..., Any],
                                                          ct: Any, klaviyo: Any) -> None:
    add_categories(ct, 2)
    client = make_api(**GATEWAY)
    response = client.post("/sync/categories", headers=as_(STRANGER))
    assert response.status_code == 403 and "BULK_CALLERS" in response.get_json()["message"]
    assert client.get("/sync/categories", headers=as_(STRANGER)).status_code == 403
    assert client.get("/sync/categories", headers=as_(OPERATOR)).status_code == 404  # nothing ran
    assert category_ids(klaviyo) == []
    # a "*@domain" entry admits that domain's accounts
    ci = as_("deployer@ci-project.iam.gserviceaccount.com")
    response = client.post("/sync/categories", headers=ci)
    assert response.status_code == 202, response.get_json()
    assert wait_done(client, response.get_json()["jobId"], ci)["startedBy"] == \
        "deployer@ci-project.iam.gserviceaccount.com"


def test_delete_all_from_a_non_admin_is_403_and_starts_nothing(
        make_api: Callable[..., Any], ct: Any, klaviyo: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    ids = add_categories(ct, 3)
    client = make_api(**GATEWAY)
    body = {"deleteAll": True, "confirmDeletion": "categories"}

    first = client.post("/sync/categories", headers=as_(OPERATOR))
    assert first.status_code == 202
    wait_done(client, first.get_json()["jobId"], as_(OPERATOR))
    assert category_ids(klaviyo) == ids
    ct.delete("categories", ids[0])

    response = client.post("/sync/categories", json=body, headers=as_(OPERATOR))
    assert response.status_code == 403, response.get_json()
    assert response.get_json()["error"] == "forbidden"
    assert f"{OPERATOR} is not in BULK_ADMINS" in response.get_json()["message"]
    latest = client.get("/sync/categories", headers=as_(OPERATOR)).get_json()
    assert latest["jobId"] == first.get_json()["jobId"]  # no new job
    assert category_ids(klaviyo) == ids  # nothing deleted
    refused = [a for a in audit_lines(caplog) if a["action"] == "deleteAll"]
    assert refused[-1]["caller"] == OPERATOR and refused[-1]["outcome"] == "forbidden"
    assert refused[-1]["kind"] == "categories" and refused[-1]["options"]["deleteAll"] is True

    # the admin may, and the job and the audit line say who
    response = client.post("/sync/categories", json=body, headers=as_(ADMIN))
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["jobId"]
    view = wait_done(client, job_id, as_(ADMIN))
    assert view["status"] == "completed" and view["deleteAll"] and view["startedBy"] == ADMIN
    assert category_ids(klaviyo) == ids[1:]
    started = [a for a in audit_lines(caplog) if a.get("outcome") == "started"]
    assert {"action": "deleteAll", "caller": ADMIN, "kind": "categories", "jobId": job_id} \
        .items() <= started[-1].items()
    assert started[0]["caller"] == OPERATOR and started[0]["action"] == "start"


def test_stop_records_who_stopped_it(caplog: pytest.LogCaptureFixture) -> None:
    """At the API layer with the in-test runner, whose tasks wait until drained (a job that
    finishes before the stop arrives would prove nothing)."""
    caplog.set_level(logging.INFO, logger="connector")
    exporters = {"categories": ListExporter("categories", [f"cat-{i}" for i in range(6)], page=2)}
    runner = make_runner(MemoryStore(), exporters)
    api = BulkApi(runner, auth="id-token", callers=(OPERATOR,), admins=(ADMIN,))
    started = api.handle("POST", "/sync/categories", b"", as_(OPERATOR))
    assert started.status == 202
    stopped = api.handle("POST", "/sync/categories/stop", b"", as_(ADMIN))
    assert stopped.status == 200 and stopped.body["stoppedBy"] == ADMIN
    drain(runner)
    view = api.handle("GET", f"/sync/jobs/{started.body['jobId']}", b"", as_(OPERATOR)).body
    assert view["status"] == "stopped"
    assert view["startedBy"] == OPERATOR and view["stoppedBy"] == ADMIN
    stop = [a for a in audit_lines(caplog) if a["action"] == "stop"][-1]
    assert stop["caller"] == ADMIN and stop["jobId"] == started.body["jobId"]
    assert stop["outcome"] == "stopping"


def test_api_key_callers_are_anonymous_and_never_admins(make_api: Callable[..., Any],
                                                        ct: Any) -> None:
    add_categories(ct, 1)
    client = make_api(**{**GATEWAY, "BULK_AUTH": "id-token-or-api-key"})
    delete_all = {"deleteAll": True, "confirmDeletion": "categories"}
    response = client.post("/sync/categories", json=delete_all)
    assert response.status_code == 403 and "API key" in response.get_json()["message"]
    # a key holder could forge the user info header: with the key on, not even an admin's counts
    response = client.post("/sync/categories", json=delete_all, headers=as_(ADMIN))
    assert response.status_code == 403 and "without --api-key" in response.get_json()["message"]
    response = client.post("/sync/categories")
    assert response.status_code == 202
    assert wait_done(client, response.get_json()["jobId"], {})["startedBy"] == "api-key"


def test_local_runs_have_no_caller_check(make_api: Callable[..., Any], ct: Any) -> None:
    add_categories(ct, 1)
    client = make_api()  # BULK_AUTH defaults to none: no gateway, the CLI's prompt guards
    response = client.post("/sync/categories", json={"deleteAll": True,
                                                     "confirmDeletion": "categories"})
    assert response.status_code == 202
    assert wait_done(client, response.get_json()["jobId"], {})["startedBy"] == "local"


def test_userinfo_decoding() -> None:
    assert caller_from_userinfo(userinfo("Alice@Merchant.example")) == \
        Caller("alice@merchant.example", verified=True)
    assert caller_from_userinfo(userinfo(None)) == Caller("sub:1234567890", verified=True)
    padded = base64.urlsafe_b64encode(json.dumps({"email": "a@b.c"}).encode()).decode()
    assert caller_from_userinfo(padded).principal == "a@b.c"
    unverified = base64.urlsafe_b64encode(json.dumps(
        {"sub": "1234567890", "email": "x@y.z", "email_verified": False}).encode()).decode()
    assert caller_from_userinfo(unverified).principal == "sub:1234567890"
    for bad in ("not base64!", base64.urlsafe_b64encode(b"[1]").decode(),
                base64.urlsafe_b64encode(b'{"iss": "x"}').decode()):
        with pytest.raises(Unauthenticated):
            caller_from_userinfo(bad)
    entries = frozenset({"a@b.c", "*@sa.example"})
    assert listed("a@b.c", entries) and listed("x@sa.example", entries)
    assert not listed("x@evil.example", entries) and not listed("sub:1", entries)
    assert not listed("x@b.c", entries)


@pytest.mark.emulator
def test_the_job_state_lives_in_the_configured_database(
        ct_env: dict[str, str], klaviyo: Any, pubsub_topic: str, firestore_db: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy.sh gives the connector a Firestore database of its own (BULK_FIRESTORE_DATABASE):
    the function writes there, not in (default), which other apps of the project may use."""
    import uuid

    from google.cloud import firestore

    from shared.state.firestore_store import FirestoreStore
    from tests.emulators import PROJECT

    database, prefix = f"c{uuid.uuid4().hex[:8]}-bulk", "callers_"
    for name, value in {**ct_env, "KLAVIYO_API_KEY": klaviyo.api_key,
                        "KLAVIYO_BASE_URL": klaviyo.url, "GOOGLE_CLOUD_PROJECT": PROJECT,
                        "BULK_TASKS_TOPIC": pubsub_topic, "BULK_COLLECTION_PREFIX": prefix,
                        "BULK_FIRESTORE_DATABASE": database, **GATEWAY}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BULK_BACKEND", raising=False)
    fresh_rate_limiter(monkeypatch)
    get_settings.cache_clear()
    try:
        client = create_app("sync_api", BULK_SOURCE).test_client()
        response = client.post("/sync/customers", json={"ids": ["c-1"]}, headers=as_(OPERATOR))
        assert response.status_code == 202, response.get_json()
        job_id = response.get_json()["jobId"]
    finally:
        get_settings.cache_clear()
    own = FirestoreStore(firestore.Client(project=PROJECT, database=database), prefix=prefix)
    job = own.get_job(job_id)
    assert job is not None and job.startedBy == OPERATOR
    assert FirestoreStore(firestore_db, prefix=prefix).get_job(job_id) is None
