"""deploy/deploy.sh and teardown.sh: the dry-run command sequence (against a kept snapshot),
idempotency guards, no secrets echoed, shellcheck, and the staged function sources.

Regenerate the snapshot after an intended change:  UPDATE_SNAPSHOTS=1 pytest tests/test_deploy_dryrun.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "tests" / "snapshots" / "deploy_dryrun.txt"
ARGS = ["--dry-run", "--project", "demo", "--region", "europe-west1"]
KLAVIYO_SECRET = "pk_SECRET_klaviyo_do_not_print"
CT_SECRET = "SECRET_ct_do_not_print"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A clean environment: the connector's settings, both secrets, and a `gcloud` that records
    any call (a dry run must make none)."""
    fake_bin = tmp_path_factory.mktemp("bin")
    (fake_bin / "gcloud").write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/calls"\nexit 1\n')
    (fake_bin / "gcloud").chmod(0o755)
    return {
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "HOME": str(tmp_path_factory.mktemp("home")),
        "LANG": "C.UTF-8",
        "PYTHON": sys.executable,
        "CONNECTOR_ENV_FILE": os.devnull,
        "CTP_PROJECT_KEY": "shop",
        "CTP_CLIENT_ID": "connector-client",
        "CTP_SCOPES": "manage_project:shop",
        "CTP_API_URL": "https://api.europe-west1.gcp.commercetools.com",
        "CTP_AUTH_URL": "https://auth.europe-west1.gcp.commercetools.com",
        "DISABLED_PROCESSORS": "StartedCheckout",
        "KLAVIYO_API_KEY": KLAVIYO_SECRET,
        "CTP_CLIENT_SECRET": CT_SECRET,
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:1",  # local-only: must not be deployed
    }


def run(script: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "deploy" / script), *args], env=env, cwd="/",
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def dry_run(env: dict[str, str]) -> str:
    result = run("deploy.sh", ARGS, env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def commands(output: str) -> list[str]:
    return [line for line in output.splitlines() if line and not line.startswith("#")]


def test_dry_run_matches_the_snapshot(dry_run: str) -> None:
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(dry_run)
    assert SNAPSHOT.exists(), "no snapshot yet: run with UPDATE_SNAPSHOTS=1"
    expected = SNAPSHOT.read_text()
    assert dry_run == expected, (
        "deploy.sh --dry-run output changed; if intended, regenerate with UPDATE_SNAPSHOTS=1 "
        "and review the diff of tests/snapshots/deploy_dryrun.txt")


def test_dry_run_is_deterministic_and_calls_no_gcloud(dry_run: str, env: dict[str, str]) -> None:
    assert run("deploy.sh", ARGS, env).stdout == dry_run
    calls = Path(env["PATH"].split(":")[0]) / "calls"
    assert not calls.exists(), calls.read_text()


def test_no_secret_value_is_printed(dry_run: str, env: dict[str, str]) -> None:
    assert KLAVIYO_SECRET not in dry_run and CT_SECRET not in dry_run
    assert "--data-file=-" in dry_run  # secrets go through stdin, never argv
    assert "FIRESTORE_EMULATOR_HOST" not in dry_run


def test_the_functions_are_deployed_as_the_issue_asks(dry_run: str) -> None:
    deploys = {re.search(r"functions deploy (\S+)", c).group(1): c
               for c in commands(dry_run) if "gcloud functions deploy" in c}
    assert set(deploys) == {"ct-klaviyo-realtime", "ct-klaviyo-bulk-worker", "ct-klaviyo-bulk-api"}
    for command in deploys.values():
        assert " --gen2 " in command and " --runtime=python311 " in command
        assert "--set-secrets=" in command and "--env-vars-file=" in command
    realtime, worker, api = (deploys[f"ct-klaviyo-{n}"] for n in ("realtime", "bulk-worker", "bulk-api"))
    assert "--source=deploy/build/realtime " in realtime and "--entry-point=handle_ct_message" in realtime
    assert "--trigger-topic=ct-klaviyo-ct-messages --retry" in realtime
    assert "--source=deploy/build/bulk " in worker and "--entry-point=run_page_task" in worker
    assert "--trigger-topic=ct-klaviyo-bulk-tasks --retry" in worker
    assert "--entry-point=sync_api" in api
    assert "--trigger-http --no-allow-unauthenticated" in api
    # both trigger subscriptions get a retry and dead-letter policy
    updates = [c for c in commands(dry_run) if "gcloud pubsub subscriptions update" in c]
    assert len(updates) == 2 and all("--max-delivery-attempts=100" in u and "--min-retry-delay"
                                     in u for u in updates)
    assert "--dead-letter-topic=ct-klaviyo-ct-messages-dead-letter" in updates[0]
    assert "--member=serviceAccount:subscriptions@commercetools-platform.iam.gserviceaccount.com" \
        in dry_run
    assert "--backend-auth-service-account=ct-klaviyo-gateway@demo.iam.gserviceaccount.com" in dry_run
    # the environment the functions get: set settings only, secrets and emulators left out
    env_lines = [line[4:] for line in dry_run.splitlines() if line.startswith("#   ")]
    assert 'BULK_BACKEND: "gcp"' in env_lines and 'GOOGLE_CLOUD_PROJECT: "demo"' in env_lines
    assert 'DISABLED_PROCESSORS: "StartedCheckout"' in env_lines
    assert not [line for line in env_lines if "SECRET" in line or "KLAVIYO_API_KEY" in line]
    assert "python -m deploy.subscriptions create --key=klaviyo-connector --project=demo " \
           "--topic=ct-klaviyo-ct-messages" in dry_run


def test_every_change_is_guarded_by_a_lookup(dry_run: str) -> None:
    """Idempotency: each create/update/deploy/binding follows the check that skips it."""
    lines = dry_run.splitlines()
    guards = {
        " create ": ("# if absent:", "# if nothing from:"),
        "functions deploy": ("# unless ",),
        "subscriptions update": ("# unless ",),
        "gateways update": ("# unless ",),
        "add-iam-policy-binding": ("# unless bound:",),
    }
    always_safe = ("gcloud services enable", "gcloud beta services identity create",
                   "python -m deploy.subscriptions create")  # idempotent by themselves
    for i, line in enumerate(lines):
        if line.startswith("#") or line.startswith(always_safe):
            continue
        for marker, prefixes in guards.items():
            if marker in line:
                assert lines[i - 1].startswith(prefixes), f"unguarded: {line}"


def test_bad_arguments_are_refused(env: dict[str, str]) -> None:
    result = run("deploy.sh", ["--dry-run", "--region", "europe-west1"], env)
    assert result.returncode == 2 and "--project is required" in result.stderr
    result = run("deploy.sh", [*ARGS, "--max-delivery-attempts", "3"], env)
    assert result.returncode == 2 and "between 5 and 100" in result.stderr
    result = run("deploy.sh", [*ARGS, "--prefix", "Bad_Prefix"], env)
    assert result.returncode == 2 and "--prefix" in result.stderr
    result = run("deploy.sh", [*ARGS, "--bogus"], env)
    assert result.returncode == 2 and "unknown argument" in result.stderr


def test_an_invalid_setting_stops_the_deploy_before_any_command(env: dict[str, str]) -> None:
    result = run("deploy.sh", ARGS, {**env, "CTP_AUTH_URL": "not-a-url"})
    assert result.returncode == 2
    assert "CTP_AUTH_URL" in result.stderr and "gcloud" not in result.stdout


def test_shellcheck_passes() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck); CI installs "
                    "only the Python dependencies")
    scripts = [str(ROOT / "deploy" / name) for name in ("deploy.sh", "teardown.sh", "lib.sh")]
    result = subprocess.run(["shellcheck", "-x", *scripts], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_staged_sources_are_self_contained(tmp_path: Path, env: dict[str, str]) -> None:
    build = tmp_path / "build"
    result = run("deploy.sh", ["--stage-only", "--build-dir", str(build)], env)
    assert result.returncode == 0, result.stderr
    for name in ("realtime", "bulk"):
        folder = build / name
        assert sorted(p.name for p in folder.iterdir()) == [
            ".gcloudignore", "main.py", "requirements.txt", "shared"]
        assert (folder / "main.py").read_bytes() == (ROOT / name / "main.py").read_bytes()
        assert (folder / "requirements.txt").read_bytes() == (ROOT / "requirements.txt").read_bytes()
        assert not list(folder.rglob("__pycache__")) and not list(folder.rglob("*.pyc"))
        shared = sorted(p.relative_to(folder).as_posix() for p in (folder / "shared").rglob("*.py"))
        assert shared == sorted(p.relative_to(ROOT).as_posix()
                                for p in (ROOT / "shared").rglob("*.py"))
        # main.py imports from its own folder only, as on Cloud Functions (settings need values)
        probe = subprocess.run(
            [sys.executable, "-c", "import main"], cwd=folder, capture_output=True, text=True,
            timeout=60, env={**{k: v for k, v in env.items() if k != "FIRESTORE_EMULATOR_HOST"},
                             "BULK_BACKEND": "local", "BULK_LOCAL_STATE_FILE": "",
                             "PYTHONDONTWRITEBYTECODE": "1"})
        assert probe.returncode == 0, probe.stderr


def test_teardown_dry_run_removes_what_deploy_creates(env: dict[str, str], dry_run: str) -> None:
    result = run("teardown.sh", ARGS, env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    created = set(re.findall(r"gcloud (?:pubsub topics|pubsub subscriptions|secrets|functions "
                             r"deploy|iam service-accounts) create (\S+)", dry_run))
    created |= set(re.findall(r"gcloud functions deploy (\S+)", dry_run))
    for name in created:
        assert re.search(rf"delete {re.escape(name)}(@\S+)?( |$)", out, re.M), f"not removed: {name}"
    assert "gcloud api-gateway gateways delete ct-klaviyo-bulk" in out
    assert "gcloud api-gateway apis delete ct-klaviyo-bulk" in out
    assert "python -m deploy.subscriptions delete --key=klaviyo-connector" in out
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("gcloud") and " delete " in line:  # guarded by its nearest check
            check = next(lines[j] for j in range(i - 1, -1, -1) if lines[j].startswith("#"))
            assert check.startswith(("# if present:", "# for each name printed by:")), line
    calls = Path(env["PATH"].split(":")[0]) / "calls"
    assert not calls.exists()


def test_teardown_asks_for_confirmation(env: dict[str, str]) -> None:
    result = run("teardown.sh", ["--project", "demo", "--region", "europe-west1"],
                 {**env, "PATH": env["PATH"]})
    # no terminal to confirm on (stdin is /dev/null and there may be no /dev/tty): refused
    assert result.returncode != 0
    assert "confirm" in result.stderr.lower() and "delete" not in result.stdout


# ---- a real run against a scripted gcloud -----------------------------------------------------

READ_ONLY = ("describe", "list", "get-iam-policy", "access")
IDEMPOTENT = (["services", "enable"], ["beta", "services", "identity", "create"])


def changes(calls: list[list[str]]) -> list[list[str]]:
    """The calls that change something (lookups and idempotent enables left out)."""
    return [c for c in calls if not any(verb in c for verb in READ_ONLY)
            and not any(c[:len(p)] == p for p in IDEMPOTENT)]


def test_a_real_run_creates_everything_once_and_a_rerun_changes_nothing(
        env: dict[str, str], tmp_path: Path) -> None:
    import json

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "fakes" / "gcloud.py"}" "$@"\n')
    (bin_dir / "gcloud").chmod(0o755)
    state = tmp_path / "state.json"
    real_env = {**env, "PATH": f"{bin_dir}:{env['PATH']}", "FAKE_GCLOUD_STATE": str(state),
                "SA_PROPAGATION_SECONDS": "0"}
    args = ["--project", "demo", "--region", "europe-west1", "--skip-ct-subscription",
            "--build-dir", str(tmp_path / "build")]

    def deploy(**extra: str) -> list[list[str]]:
        before = len(json.loads(state.read_text())["calls"]) if state.exists() else 0
        result = run("deploy.sh", args, {**real_env, **extra})
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return json.loads(state.read_text())["calls"][before:]

    first = changes(deploy())
    kinds = [" ".join(c[:3]) for c in first]
    assert kinds.count("pubsub topics create") == 4
    assert kinds.count("pubsub subscriptions create") == 2  # the dead-letter pull subscriptions
    assert kinds.count("iam service-accounts create") == 3
    assert kinds.count("functions deploy ct-klaviyo-realtime") == 1
    assert sum(k.startswith("functions deploy") for k in kinds) == 3
    assert kinds.count("pubsub subscriptions update") == 2
    assert {"secrets create ct-klaviyo-klaviyo-api-key", "secrets create ct-klaviyo-ctp-client-secret",
            "firestore databases create", "api-gateway apis create",
            "api-gateway api-configs create", "api-gateway gateways create",
            "services api-keys create"} <= set(kinds)
    saved = json.loads(state.read_text())
    assert saved["resources"]["secrets/ct-klaviyo-klaviyo-api-key"]["values"] == [KLAVIYO_SECRET]
    assert KLAVIYO_SECRET not in json.dumps(saved["calls"]) and CT_SECRET not in json.dumps(saved["calls"])
    staged_spec = (tmp_path / "build" / "openapi.yaml").read_text()
    assert "address: https://ct-klaviyo-bulk-api-abc123-ew.a.run.app" in staged_spec

    assert changes(deploy()) == []  # everything is already right

    # a rotated Klaviyo key: one new secret version, and the functions move to it
    rotated = changes(deploy(KLAVIYO_API_KEY="pk_rotated_SECRET"))
    assert [" ".join(c[:4]) for c in rotated if c[0] == "secrets"] == [
        "secrets versions add ct-klaviyo-klaviyo-api-key"]
    deploys = [c for c in rotated if c[:2] == ["functions", "deploy"]]
    assert len(deploys) == 3 and all("KLAVIYO_API_KEY=ct-klaviyo-klaviyo-api-key:2" in " ".join(c)
                                     for c in deploys)
    assert len(rotated) == 4


# ---- the functions' environment (deploy/envvars.py) --------------------------------------------


def test_envvars_keeps_set_settings_environment_over_file_and_drops_secrets() -> None:
    from deploy import envvars
    from shared.errors import ConfigError

    values = envvars.collect(
        {"CTP_PROJECT_KEY": "from-env", "KLAVIYO_API_KEY": "secret", "PUBSUB_EMULATOR_HOST": "x",
         "PATH": "/bin", "log_level": "debug"},
        {"CTP_PROJECT_KEY": "from-file", "CTP_CLIENT_ID": "file-id", "CTP_CLIENT_SECRET": "s"},
        {"GOOGLE_CLOUD_PROJECT": "demo"})
    assert values == {"CTP_CLIENT_ID": "file-id", "CTP_PROJECT_KEY": "from-env",
                      "GOOGLE_CLOUD_PROJECT": "demo", "LOG_LEVEL": "debug"}
    assert envvars.secret_fields() >= {"klaviyo_api_key", "ctp_client_secret"}
    assert envvars.to_yaml({"A": 'say "hi", x: y'}) == 'A: "say \\"hi\\", x: y"\n'
    with pytest.raises(ConfigError, match="NOT_A_SETTING"):
        envvars.collect({}, {}, {"NOT_A_SETTING": "1"})


def test_a_misspelt_processor_name_stops_the_deploy(env: dict[str, str]) -> None:
    result = run("deploy.sh", ARGS, {**env, "DISABLED_PROCESSORS": "CustomerCreatd"})
    assert result.returncode == 2 and "DISABLED_PROCESSORS" in result.stderr
