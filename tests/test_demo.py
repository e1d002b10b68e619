"""Demo and preview mode of `make run` (deploy/local.py), each in its own process as a user runs
it, plus the start-up rules: demo only without any connection setting and never on Cloud
Functions, settings problems in one line, local bulk state despite GOOGLE_CLOUD_PROJECT."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.demo import shop
from deploy.local import choose_mode
from tests.demo_server import ROOT, LocalServer, clean_environment, free_port, start_local

README = (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    # A gcloud user's shell exports GOOGLE_CLOUD_PROJECT: the local run must stay local.
    server = start_local(tmp_path_factory.mktemp("demo"),
                         {"GOOGLE_CLOUD_PROJECT": "a-gcloud-users-project"})
    try:
        server.wait_for("console:")
        yield server
    finally:
        server.stop()


# ---- which mode -----------------------------------------------------------------------------


def test_demo_only_without_any_connection_setting() -> None:
    assert choose_mode({}, {}) == "demo"
    assert choose_mode({"PATH": "/bin", "GOOGLE_CLOUD_PROJECT": "p"}, {}) == "demo"
    assert choose_mode({"CTP_PROJECT_KEY": "shop"}, {}) == "live"
    assert choose_mode({}, {"KLAVIYO_API_KEY": ""}) == "live"  # .env.example copied: configure
    assert choose_mode({"CTP_PROJECT_KEY": "shop", "KLAVIYO_PREVIEW": "true"}, {}) == "preview"
    assert choose_mode({"CTP_PROJECT_KEY": "shop"}, {}, demo=True) == "demo"


def test_never_demo_on_cloud_functions() -> None:
    assert choose_mode({"K_SERVICE": "ct-klaviyo-bulk-api"}, {}) == "live"
    assert choose_mode({"FUNCTION_TARGET": "sync_api"}, {}, demo=True) == "live"


def _run_local(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deploy.local", "--port", str(free_port())],
                          env=clean_environment(env), cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


def test_on_cloud_functions_a_missing_setting_is_one_line(tmp_path: Path) -> None:
    result = _run_local({"K_SERVICE": "ct-klaviyo-realtime"}, tmp_path)
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith("invalid configuration: CTP_PROJECT_KEY (missing)"), result.stderr
    assert "KLAVIYO_API_KEY (missing)" in first and "Traceback" not in result.stderr


def test_empty_secrets_and_every_problem_in_one_line(tmp_path: Path) -> None:
    env = {"CTP_PROJECT_KEY": "shop", "CTP_CLIENT_ID": "id", "CTP_CLIENT_SECRET": "",
           "CTP_API_URL": "https://api.europe-west1.gcp.commercetools.com",
           "CTP_AUTH_URL": "not a url", "KLAVIYO_API_KEY": " "}
    result = _run_local(env, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.splitlines()[0]
    assert line == ("invalid configuration: CTP_CLIENT_SECRET (empty), CTP_AUTH_URL (String "
                    "should match pattern '^https?://\\S+$'), KLAVIYO_API_KEY (empty)"), line


def test_preview_is_refused_on_cloud_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.config import load_settings
    from shared.errors import ConfigError

    monkeypatch.setenv("K_SERVICE", "ct-klaviyo-realtime")
    with pytest.raises(ConfigError, match=r"KLAVIYO_PREVIEW \(only for local runs"):
        load_settings(ctp_project_key="p", ctp_client_id="i", ctp_client_secret="s",
                      ctp_api_url="https://a", ctp_auth_url="https://b", klaviyo_api_key="k",
                      klaviyo_preview=True)


# ---- demo mode ------------------------------------------------------------------------------


def test_demo_says_so_first_and_serves_the_console(demo: LocalServer) -> None:
    assert demo.lines[0].startswith("DEMO MODE"), demo.lines
    status, page = demo.get("/")
    assert status == 200 and "<title>commercetools → Klaviyo" in page
    status, body = demo.get("/sandbox/commercetools/demo-shop/customers/"
                            + shop.doc_id("customer", 0))
    assert status == 401  # the sandbox is commercetools' API, token and all


def test_demo_bulk_sync_counts_its_total_and_fills_the_preview(demo: LocalServer) -> None:
    for kind in ("categories", "products", "customers", "orders"):
        status, started = demo.post(f"/sync/{kind}")
        assert status == 202, started
        job = demo.wait_job(kind)
        assert job["status"] == "completed", job
        expected = {"categories": len(shop.CATEGORIES), "products": len(shop.PRODUCTS),
                    "customers": shop.CUSTOMERS, "orders": shop.ORDERS}[kind]
        assert job["total"] == expected and job["counts"]["read"] == expected, job
        assert job["progress"]["percent"] == 100.0 and job["progress"]["read"] == expected

    status, preview = demo.get("/_demo/preview")
    assert status == 200 and preview["mode"] == "demo"
    assert len(preview["profiles"]) == shop.CUSTOMERS
    anna = next(p for p in preview["profiles"]
                if p["attributes"]["external_id"] == shop.doc_id("customer", 0))
    sent = anna["requests"][0]
    assert sent["path"] == "/api/profile-bulk-import-jobs" and sent["status"] == 202
    assert sent["body"]["attributes"]["email"] == "anna.schmidt@example.com"
    placed = preview["events"]["Placed Order"]
    assert len(placed) == shop.ORDERS
    assert {e["unique_id"] for e in placed} == {f"{shop.doc_id('order', i)}:placed"
                                                for i in range(shop.ORDERS)}
    assert len(preview["events"]["Refunded Order"]) == shop.ORDERS // 10
    assert len(preview["items"]) == len(shop.PRODUCTS)
    assert len(preview["categories"]) == len(shop.CATEGORIES)
    variants = sum(len(p[5]) * len(p[6]) for p in shop.PRODUCTS)
    assert len(preview["variants"]) == variants
    assert all(v["requests"] for v in preview["variants"])


def test_demo_change_delivers_to_realtime(demo: LocalServer) -> None:
    status, change = demo.post("/_demo/change?kind=customer")
    assert status == 200 and change["realtimeStatus"] == 200, change
    _, preview = demo.get("/_demo/preview")
    profile = next(p for p in preview["profiles"]
                   if p["attributes"]["external_id"] == change["resourceId"])
    assert re.fullmatch(r"\w+ \(\d+\)", profile["attributes"]["first_name"]), profile
    assert profile["requests"][-1]["path"] == "/api/profile-import"

    status, change = demo.post("/_demo/change?kind=order")
    assert status == 200 and change["realtimeStatus"] == 200, change
    _, preview = demo.get("/_demo/preview")
    assert f"{change['resourceId']}:placed" in {e["unique_id"]
                                               for e in preview["events"]["Placed Order"]}


def _readme_block(after: str) -> str:
    section = README.split(after, 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_readme_cloudevent_curl_works_as_written(demo: LocalServer) -> None:
    block = _readme_block("Post a commercetools delivery as a Pub/Sub CloudEvent")
    assert "http://127.0.0.1:8080/realtime " in block  # the documented URL, no trailing slash
    script = block.replace("127.0.0.1:8080", f"127.0.0.1:{demo.port}")
    before = demo.get("/_demo/preview")[1]["requestCount"]
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("HTTP/1.1 200"), result.stdout
    _, preview = demo.get("/_demo/preview")
    assert preview["requestCount"] > before
    customer = shop.doc_id("customer", 0)
    assert customer in block
    anna = next(p for p in preview["profiles"] if p["attributes"]["external_id"] == customer)
    assert anna["requests"][-1]["path"] == "/api/profile-import"


def test_readme_quick_start_make_run_serves_the_demo(tmp_path: Path) -> None:
    block = _readme_block("## Quick start")
    assert re.findall(r"^make (\w+)", block, flags=re.M) == ["run", "test"]  # `make test` is CI
    port = free_port()
    # `make run` in the repository (its .venv is installed: CI ran `make test` first).
    server = LocalServer(["make", "--no-print-directory", "run", f"PORT={port}"],
                         env=clean_environment({"BULK_LOCAL_STATE_FILE": ""}), cwd=ROOT,
                         port=port)
    try:
        server.wait_for("console:")
        assert any(line.startswith("DEMO MODE") for line in server.lines), server.lines
        assert server.get("/")[0] == 200
    finally:
        server.stop()


def test_readme_functions_served_alone(ct_env: dict[str, str], klaviyo: Any,
                                       tmp_path: Path) -> None:
    block = _readme_block("Each function can also be served alone")
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    env = {**ct_env, "KLAVIYO_API_KEY": klaviyo.api_key, "KLAVIYO_BASE_URL": klaviyo.url,
           "BULK_LOCAL_STATE_FILE": ""}
    for command in commands:
        port = free_port()
        line = re.sub(r"--port \d+", f"--port {port}", command)
        server = LocalServer(["bash", "-c", line], env=clean_environment(env), cwd=ROOT,
                             port=port)
        try:
            server.wait_for(None, timeout=60)
            if "sync_api" in line:
                assert server.get("/sync/customers")[0] == 404  # no job yet: the API answers
        finally:
            server.stop()


# ---- preview mode ---------------------------------------------------------------------------


def test_preview_reads_real_commercetools_and_writes_nothing_to_klaviyo(
    ct: Any, ct_env: dict[str, str], klaviyo: Any, tmp_path: Path
) -> None:
    for i in range(12):  # the merchant's real project (here: the commercetools fake)
        ct.add("customers", shop.customer(i))
    env = {**ct_env, "KLAVIYO_PREVIEW": "true",
           # a real account configured too: preview must still send it nothing
           "KLAVIYO_API_KEY": klaviyo.api_key, "KLAVIYO_BASE_URL": klaviyo.url}
    server = start_local(tmp_path, env)
    try:
        server.wait_for("console:")
        assert server.lines[0].startswith("PREVIEW MODE"), server.lines
        assert server.post("/sync/customers")[0] == 202
        job = server.wait_job("customers")
        assert job["status"] == "completed" and job["total"] == 12, job
        _, preview = server.get("/_demo/preview")
        assert preview["mode"] == "preview"
        assert sorted(p["attributes"]["external_id"] for p in preview["profiles"]) == sorted(
            shop.doc_id("customer", i) for i in range(12))
        assert server.post("/_demo/change")[0] == 404  # the real shop is not ours to change
    finally:
        server.stop()
    assert klaviyo.requests == []
    assert ct.api_requests("customers")  # read from "real" commercetools


# ---- CLI ------------------------------------------------------------------------------------


def test_cli_json_is_only_json_and_logs_go_to_stderr(
    ct: Any, ct_env: dict[str, str], klaviyo: Any, tmp_path: Path
) -> None:
    for doc in shop.categories():
        ct.add("categories", doc)
    env = clean_environment({**ct_env, "KLAVIYO_API_KEY": klaviyo.api_key,
                             "KLAVIYO_BASE_URL": klaviyo.url, "LOG_LEVEL": "DEBUG"})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bulk", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    synced = cli("sync", "categories", "--json")
    assert synced.returncode == 0, synced.stderr
    job = json.loads(synced.stdout)  # nothing else on stdout
    assert job["status"] == "completed" and job["total"] == len(shop.CATEGORIES)
    assert job["progress"]["percent"] == 100.0
    assert '"severity":"INFO"' in synced.stderr  # the DEBUG-level logs went to stderr
    assert f"{len(shop.CATEGORIES)}/{len(shop.CATEGORIES)}" in synced.stderr  # the bar

    status = cli("status", "categories", "--json")
    assert json.loads(status.stdout)["jobId"] == job["jobId"]
    released = cli("release", "categories")
    assert released.stdout == "released the categories lock (it was not held)\n" or \
        released.stdout.startswith("released the categories lock"), released.stdout
    assert len(released.stdout.splitlines()) == 1 and "severity" in released.stderr
