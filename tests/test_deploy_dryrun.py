"""deploy/deploy.sh and teardown.sh: the dry-run command sequence (against a kept snapshot),
idempotency guards, no secrets echoed, shellcheck, and the staged function sources.

Regenerate the snapshot after an intended change:

    UPDATE_SNAPSHOTS=1 pytest tests/test_deploy_dryrun.py
"""

from __future__ import annotations

import json
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
        "BULK_CALLERS": "ops@shop.example,*@ci-demo.iam.gserviceaccount.com",
        "BULK_ADMINS": "admin@shop.example",
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


def _deployed_name(command: str) -> str:
    found = re.search(r"functions deploy (\S+)", command)
    assert found is not None, command
    return found.group(1)


def test_the_functions_are_deployed_as_the_issue_asks(dry_run: str) -> None:
    deploys = {_deployed_name(c): c for c in commands(dry_run) if "gcloud functions deploy" in c}
    assert set(deploys) == {"ct-klaviyo-realtime", "ct-klaviyo-bulk-worker", "ct-klaviyo-bulk-api"}
    for command in deploys.values():
        assert " --gen2 " in command and " --runtime=python311 " in command
        assert "--env-vars-file=" in command
    realtime, worker, api = (deploys[f"ct-klaviyo-{n}"]
                             for n in ("realtime", "bulk-worker", "bulk-api"))
    # one identity per function; the event functions take internal traffic only
    assert "--service-account=ct-klaviyo-realtime@demo.iam.gserviceaccount.com " in realtime
    assert "--service-account=ct-klaviyo-worker@demo.iam.gserviceaccount.com " in worker
    assert "--service-account=ct-klaviyo-bulk-api@demo.iam.gserviceaccount.com " in api
    assert "--ingress-settings=internal-only" in realtime
    assert "--ingress-settings=internal-only" in worker
    assert "--ingress-settings=all" in api
    # the bulk API reads no secret; the others both
    assert "--clear-secrets" in api and "--set-secrets" not in api and "env-bulk-api.yaml" in api
    assert "--set-secrets=" in realtime and "--set-secrets=" in worker
    assert "--source=deploy/build/realtime " in realtime
    assert "--entry-point=handle_ct_message" in realtime
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
    assert ("--backend-auth-service-account=ct-klaviyo-gateway@demo.iam.gserviceaccount.com"
            in dry_run)
    # the environment the functions get: set settings only, secrets and emulators left out
    env_lines = [line[4:] for line in dry_run.splitlines() if line.startswith("#   ")]
    assert 'BULK_BACKEND: "gcp"' in env_lines and 'GOOGLE_CLOUD_PROJECT: "demo"' in env_lines
    assert 'BULK_AUTH: "id-token"' in env_lines
    assert 'BULK_FIRESTORE_DATABASE: "ct-klaviyo-bulk"' in env_lines
    assert 'BULK_ADMINS: "admin@shop.example"' in env_lines
    assert 'DISABLED_PROCESSORS: "StartedCheckout"' in env_lines
    assert not [line for line in env_lines if "SECRET" in line or "KLAVIYO_API_KEY" in line]
    assert "python -m deploy.subscriptions create --key=klaviyo-connector --project=demo " \
           "--topic=ct-klaviyo-ct-messages" in dry_run


RUNTIME_ACCOUNTS = {"realtime": "ct-klaviyo-realtime@demo.iam.gserviceaccount.com",
                    "bulk-api": "ct-klaviyo-bulk-api@demo.iam.gserviceaccount.com",
                    "worker": "ct-klaviyo-worker@demo.iam.gserviceaccount.com"}
DB_CONDITION = ("--condition='expression=resource.name=="
                "\"projects/demo/databases/ct-klaviyo-bulk\",title=")


def granted(output: str) -> dict[str, set[tuple[str, str]]]:
    """member -> {(resource, role)} of every add-iam-policy-binding in the output."""
    grants: dict[str, set[tuple[str, str]]] = {}
    for command in commands(output):
        match = re.search(r"gcloud (.+?) add-iam-policy-binding (\S+) .*--member=(\S+) "
                          r"--role=(\S+)", command)
        if match:
            group, resource, member, role = match.groups()
            member = member.strip("'").removeprefix("serviceAccount:")
            grants.setdefault(member, set()).add((f"{group} {resource}", role))
    return grants


def test_three_runtime_accounts_with_only_their_roles(dry_run: str) -> None:
    grants = granted(dry_run)
    created = re.findall(r"gcloud iam service-accounts create (\S+)", dry_run)
    assert {f"{name}@demo.iam.gserviceaccount.com" for name in created} >= set(
        RUNTIME_ACCOUNTS.values())
    assert grants[RUNTIME_ACCOUNTS["realtime"]] == {
        ("secrets ct-klaviyo-klaviyo-api-key", "roles/secretmanager.secretAccessor"),
        ("secrets ct-klaviyo-ctp-client-secret", "roles/secretmanager.secretAccessor")}
    bulk = {("pubsub topics ct-klaviyo-bulk-tasks", "roles/pubsub.publisher"),
            ("projects demo", "roles/datastore.user")}
    assert grants[RUNTIME_ACCOUNTS["bulk-api"]] == bulk
    assert grants[RUNTIME_ACCOUNTS["worker"]] == bulk | grants[RUNTIME_ACCOUNTS["realtime"]]
    # datastore.user only on the connector's own database
    for account in (RUNTIME_ACCOUNTS["bulk-api"], RUNTIME_ACCOUNTS["worker"]):
        line = next(c for c in commands(dry_run) if "roles/datastore.user" in c and account in c
                    and "add-iam-policy-binding" in c)
        assert DB_CONDITION in line, line
    assert "gcloud firestore databases create --database=ct-klaviyo-bulk " in dry_run
    assert not [c for c in commands(dry_run) if "add-iam-policy-binding" in c
                and "--condition=None" in c]
    # the earlier shared account is stripped and deleted
    assert ("gcloud iam service-accounts delete ct-klaviyo-runtime@demo.iam.gserviceaccount.com"
            in dry_run)


def staged_spec(output: str) -> str:
    return "\n".join(line[5:] for line in output.splitlines() if line.startswith("#  | "))


def test_the_staged_spec_takes_google_id_tokens_and_no_query_key(dry_run: str) -> None:
    spec = staged_spec(dry_run)
    assert 'x-google-issuer: "https://accounts.google.com"' in spec
    assert 'x-google-jwks_uri: "https://www.googleapis.com/oauth2/v3/certs"' in spec
    assert 'x-google-audiences: "ct-klaviyo-bulk-api/demo"' in spec
    assert "- google_id_token: []" in spec and "- api_key_header" not in spec
    assert "in: query" not in spec
    done = dry_run[dry_run.index("## Done"):]
    assert "Audience:        ct-klaviyo-bulk-api/demo" in done
    assert "print-identity-token" in done and "--audiences='ct-klaviyo-bulk-api/demo'" in done
    assert 'curl -sS -H "Authorization: Bearer $TOKEN" https://' in done
    assert "application-default login" in done
    assert "BULK_ADMINS=admin@shop.example" in done
    assert "?key=" not in dry_run and "api-keys create" not in dry_run
    readme = (ROOT / "README.md").read_text()
    assert "?key=" not in readme


def test_the_api_key_is_offered_only_when_asked_and_only_in_a_header(env: dict[str, str]) -> None:
    result = run("deploy.sh", [*ARGS, "--api-key"], env)
    assert result.returncode == 0, result.stderr
    spec = staged_spec(result.stdout)
    assert "- google_id_token: []" in spec and "- api_key_header: []" in spec
    assert "API_KEY_OPTION" not in spec and "in: query" not in spec
    assert "gcloud services api-keys create" in result.stdout
    assert "api-keys delete" not in result.stdout
    assert 'BULK_AUTH: "id-token-or-api-key"' in result.stdout
    assert "x-api-key header only" in result.stdout and "?key=" not in result.stdout


def test_help_goes_to_stdout_and_succeeds(env: dict[str, str]) -> None:
    for script in ("deploy.sh", "teardown.sh"):
        result = run(script, ["--help"], env)
        assert result.returncode == 0 and result.stderr == ""
        assert "--project" in result.stdout and "--dry-run" in result.stdout
    assert "SA_PROPAGATION_SECONDS" in run("deploy.sh", ["--help"], env).stdout


def test_test_urls_are_refused_unless_allowed(env: dict[str, str]) -> None:
    for name, value in (("CTP_API_URL", "http://127.0.0.1:8080"),
                        ("CTP_AUTH_URL", "http://localhost:8081"),
                        ("KLAVIYO_BASE_URL", "http://127.0.0.1:9000")):
        result = run("deploy.sh", ARGS, {**env, name: value})
        assert result.returncode == 2, result.stdout[-500:]
        assert name in result.stderr and "--allow-test-urls" in result.stderr
        assert "gcloud" not in result.stdout
        allowed = run("deploy.sh", [*ARGS, "--allow-test-urls"], {**env, name: value})
        assert allowed.returncode == 0, allowed.stderr


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
        assert not os.environ.get("REQUIRE_SHELLCHECK"), \
            "shellcheck is missing (.ci/run installs it)"
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
        requirements = (ROOT / "requirements.txt").read_bytes()
        assert (folder / "requirements.txt").read_bytes() == requirements
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
        assert re.search(rf"delete {re.escape(name)}(@\S+)?( |$)", out, re.M), \
            f"not removed: {name}"
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
IDEMPOTENT = (["services", "enable"], ["beta", "services", "identity", "create"],
              ["beta", "--help"])
# The stand-in gcloud's state after `deploy.sh --project demo --region europe-west1
# --skip-ct-subscription` of commit 52d0822 (main before issue 18: one shared runtime account,
# the (default) database, an API key) with this file's environment. Regenerate with
#   git archive 52d0822 | tar -x -C /tmp/old && (cd /tmp/old && FAKE_GCLOUD_STATE=state.json \
#     PATH=<dir with a gcloud running tests/fakes/gcloud.py>:$PATH bash deploy/deploy.sh ...)
# and an emptied "calls" list.
MAIN_STATE = ROOT / "tests" / "snapshots" / "gcloud_state_main_52d0822.json"


def changes(calls: list[list[str]]) -> list[list[str]]:
    """The calls that change something (lookups and idempotent enables left out)."""
    return [c for c in calls if not any(verb in c for verb in READ_ONLY)
            and not any(c[:len(p)] == p for p in IDEMPOTENT)]


class FakeCloud:
    """deploy.sh in its real mode against tests/fakes/gcloud.py and one state file."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "gcloud").write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "fakes" / "gcloud.py"}" "$@"\n')
        (bin_dir / "gcloud").chmod(0o755)
        self.state = tmp_path / "state.json"
        self.build = tmp_path / "build"
        self.env = {**env, "PATH": f"{bin_dir}:{env['PATH']}", "FAKE_GCLOUD_STATE": str(self.state),
                    "SA_PROPAGATION_SECONDS": "0"}
        self.args = ["--project", "demo", "--region", "europe-west1", "--skip-ct-subscription",
                     "--build-dir", str(self.build)]

    def saved(self) -> dict:
        return json.loads(self.state.read_text()) if self.state.exists() else {"calls": []}

    def run(self, script: str = "deploy.sh", *extra_args: str,
            **extra_env: str) -> subprocess.CompletedProcess[str]:
        return run(script, [*self.args, *extra_args], {**self.env, **extra_env})

    def deploy(self, *extra_args: str, **extra_env: str) -> list[list[str]]:
        """Every gcloud call of one successful run."""
        before = len(self.saved()["calls"])
        result = self.run("deploy.sh", *extra_args, **extra_env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return self.saved()["calls"][before:]

    def bindings_of(self, account: str) -> list[list[str]]:
        return sorted(b for b in self.saved()["bindings"] if b[2] == f"serviceAccount:{account}")


@pytest.fixture
def cloud(env: dict[str, str], tmp_path: Path) -> FakeCloud:
    return FakeCloud(env, tmp_path)


REALTIME, API, WORKER = (RUNTIME_ACCOUNTS[n] for n in ("realtime", "bulk-api", "worker"))
LEGACY = "ct-klaviyo-runtime@demo.iam.gserviceaccount.com"
DB_ONLY = "ct-klaviyo-bulk-only"


def assert_least_privilege(cloud: FakeCloud) -> None:
    secrets = [["ct-klaviyo-ctp-client-secret", "roles/secretmanager.secretAccessor"],
               ["ct-klaviyo-klaviyo-api-key", "roles/secretmanager.secretAccessor"]]
    bulk = [["ct-klaviyo-bulk-tasks", "roles/pubsub.publisher"],
            ["demo", "roles/datastore.user", DB_ONLY]]
    assert [b[:1] + b[1:2] + b[3:] for b in cloud.bindings_of(REALTIME)] == secrets
    assert [b[:1] + b[1:2] + b[3:] for b in cloud.bindings_of(API)] == sorted(bulk)
    assert [b[:1] + b[1:2] + b[3:] for b in cloud.bindings_of(WORKER)] == sorted(bulk + secrets)
    saved = cloud.saved()
    assert (saved["conditions"][DB_ONLY]
            == 'resource.name=="projects/demo/databases/ct-klaviyo-bulk"')
    functions = {k.split("/", 1)[1]: v for k, v in saved["resources"].items()
                 if k.startswith("functions/")}
    assert {n: f["serviceAccount"] for n, f in functions.items()} == {
        "ct-klaviyo-realtime": REALTIME, "ct-klaviyo-bulk-worker": WORKER,
        "ct-klaviyo-bulk-api": API}
    assert {n: f["ingress"] for n, f in functions.items()} == {
        "ct-klaviyo-realtime": "internal-only", "ct-klaviyo-bulk-worker": "internal-only",
        "ct-klaviyo-bulk-api": "all"}
    assert functions["ct-klaviyo-bulk-api"]["secrets"] == ""
    assert "firestore databases/ct-klaviyo-bulk" in saved["resources"]
    assert f"service-account/{LEGACY}" not in saved["resources"]
    assert not cloud.bindings_of(LEGACY)
    assert not [k for k in saved["resources"] if k.startswith("api-key/")]
    env_bulk_api = (cloud.build / "env-bulk-api.yaml").read_text()
    assert env_bulk_api.count("not-available-to-the-bulk-api") == 2


def test_a_real_run_creates_everything_once_and_a_rerun_changes_nothing(cloud: FakeCloud) -> None:
    first = changes(cloud.deploy())
    kinds = [" ".join(c[:3]) for c in first]
    assert kinds.count("pubsub topics create") == 4
    assert kinds.count("pubsub subscriptions create") == 2  # the dead-letter pull subscriptions
    assert kinds.count("iam service-accounts create") == 5
    assert kinds.count("functions deploy ct-klaviyo-realtime") == 1
    assert sum(k.startswith("functions deploy") for k in kinds) == 3
    assert kinds.count("pubsub subscriptions update") == 2
    assert {"secrets create ct-klaviyo-klaviyo-api-key",
            "secrets create ct-klaviyo-ctp-client-secret",
            "firestore databases create", "api-gateway apis create",
            "api-gateway api-configs create", "api-gateway gateways create"} <= set(kinds)
    assert "services api-keys create" not in kinds
    assert not [c for c in first if "delete" in c]  # a fresh project: nothing to migrate
    saved = cloud.saved()
    assert saved["resources"]["secrets/ct-klaviyo-klaviyo-api-key"]["values"] == [KLAVIYO_SECRET]
    assert KLAVIYO_SECRET not in json.dumps(saved["calls"])
    assert CT_SECRET not in json.dumps(saved["calls"])
    staged_spec = (cloud.build / "openapi.yaml").read_text()
    assert "address: https://ct-klaviyo-bulk-api-abc123-ew.a.run.app" in staged_spec
    assert 'x-google-audiences: "ct-klaviyo-bulk-api/demo"' in staged_spec
    assert "api_key_header: []" not in staged_spec and "PLACEHOLDER" not in staged_spec
    assert_least_privilege(cloud)

    assert changes(cloud.deploy()) == []  # everything is already right

    # a rotated Klaviyo key: one new secret version, and the functions that read it move to it
    rotated = changes(cloud.deploy(KLAVIYO_API_KEY="pk_rotated_SECRET"))
    assert [" ".join(c[:4]) for c in rotated if c[0] == "secrets"] == [
        "secrets versions add ct-klaviyo-klaviyo-api-key"]
    deploys = [c for c in rotated if c[:2] == ["functions", "deploy"]]
    assert sorted(c[2] for c in deploys) == ["ct-klaviyo-bulk-worker", "ct-klaviyo-realtime"]
    assert all("KLAVIYO_API_KEY=ct-klaviyo-klaviyo-api-key:2" in " ".join(c) for c in deploys)
    assert len(rotated) == 3


def test_an_installation_of_main_is_migrated_once(cloud: FakeCloud) -> None:
    state = json.loads(MAIN_STATE.read_text())
    cloud.state.write_text(json.dumps(state))
    assert f"service-account/{LEGACY}" in state["resources"]  # what today's main deployed
    assert ["demo", "roles/datastore.user", f"serviceAccount:{LEGACY}"] in state["bindings"]

    migration = changes(cloud.deploy())
    kinds = [" ".join(c[:3]) for c in migration]
    assert kinds.count("iam service-accounts create") == 3  # the three runtime accounts
    assert sum(k.startswith("functions deploy") for k in kinds) == 3
    # the old account loses its roles only once every function runs as its own account, and the
    # old API key goes (the gateway takes ID tokens now)
    order = [" ".join(c[:3]) for c in migration if c[0] in ("functions", "iam", "projects")
             or c[:3] == ["services", "api-keys", "delete"]]
    last_deploy = max(i for i, k in enumerate(order) if k.startswith("functions deploy"))
    first_revoke = min(i for i, c in enumerate(order) if c.startswith("projects remove"))
    assert last_deploy < first_revoke
    assert [c for c in migration if "remove-iam-policy-binding" in c and LEGACY in " ".join(c)]
    assert ["iam", "service-accounts", "delete", LEGACY] == \
        next(c[:4] for c in migration if c[:3] == ["iam", "service-accounts", "delete"])
    assert "services api-keys delete" in kinds
    assert "api-gateway gateways update" in kinds  # the new (ID token) config
    # job state moves to the connector's database; the (default) one is left alone
    assert "firestore databases create" in kinds
    assert not [c for c in migration if c[:2] == ["firestore", "databases"] and "delete" in c]
    assert_least_privilege(cloud)

    assert changes(cloud.deploy()) == []  # idempotent after the migration


@pytest.mark.parametrize("installed_by", ["this version", "main"])
def test_teardown_removes_what_deploy_created(cloud: FakeCloud, installed_by: str) -> None:
    if installed_by == "main":
        cloud.state.write_text(MAIN_STATE.read_text())
    else:
        cloud.deploy("--api-key")
    before = set(cloud.saved()["resources"])
    result = cloud.run("teardown.sh", "--yes")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    left = set(cloud.saved()["resources"])
    # only what earlier versions created and teardown keeps on purpose: the (default) database
    assert left == ({"firestore databases/(default)"} & before), left
    connector = ("ct-klaviyo-", "serviceAccount:ct-klaviyo-")
    assert not [b for b in cloud.saved()["bindings"] if b[0].startswith(connector)
                or b[2].startswith(connector) or b[0] == "demo"], cloud.saved()["bindings"]
    # a second teardown finds nothing to do
    before_calls = len(cloud.saved()["calls"])
    again = cloud.run("teardown.sh", "--yes")
    assert again.returncode == 0, again.stderr
    assert changes(cloud.saved()["calls"][before_calls:]) == []


def test_secrets_come_from_the_env_file(cloud: FakeCloud, tmp_path: Path) -> None:
    env_file = tmp_path / "connector.env"
    env_file.write_text(f"KLAVIYO_API_KEY={KLAVIYO_SECRET}\nCTP_CLIENT_SECRET={CT_SECRET}\n")
    cloud.deploy(KLAVIYO_API_KEY="", CTP_CLIENT_SECRET="", CONNECTOR_ENV_FILE=str(env_file))
    resources = cloud.saved()["resources"]
    assert resources["secrets/ct-klaviyo-klaviyo-api-key"]["values"] == [KLAVIYO_SECRET]
    assert resources["secrets/ct-klaviyo-ctp-client-secret"]["values"] == [CT_SECRET]


def test_a_missing_secret_stops_the_run_before_anything_is_created(cloud: FakeCloud) -> None:
    result = cloud.run("deploy.sh", KLAVIYO_API_KEY="")  # no terminal to ask on
    assert result.returncode == 2
    assert "KLAVIYO_API_KEY is not set" in result.stderr and "nothing was created" in result.stderr
    assert changes(cloud.saved()["calls"]) == []
    # with the secret already in Secret Manager (a re-run), it is not needed again
    cloud.deploy()
    assert changes(cloud.deploy(KLAVIYO_API_KEY="", CTP_CLIENT_SECRET="")) == []


def test_the_api_key_option_on_the_stand_in(cloud: FakeCloud) -> None:
    cloud.deploy("--api-key")
    assert [k for k in cloud.saved()["resources"] if k.startswith("api-key/")] == [
        "api-key/ct-klaviyo bulk API"]
    assert "api_key_header: []" in (cloud.build / "openapi.yaml").read_text()
    assert changes(cloud.deploy("--api-key")) == []
    dropped = changes(cloud.deploy())  # without it: the key goes, the spec takes tokens only
    assert ["services", "api-keys", "delete"] in [c[:3] for c in dropped]
    assert not [k for k in cloud.saved()["resources"] if k.startswith("api-key/")]


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
