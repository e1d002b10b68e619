"""The operator tools (`deploy.locks`, `deploy.deadletters`) outside the happy path: a missing
credential or venv is one line saying what to run; a lock release is audited with the operator."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from deploy import locks
from shared.state import MemoryStore
from shared.state.jobs import utcnow

ROOT = Path(__file__).resolve().parents[1]


def tool(*args: str, python: list[str] | None = None,
         **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
                          "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")}
    # no credentials anywhere: a missing key file, and a HOME without gcloud's ADC file
    clean |= {"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/adc.json", "CLOUDSDK_CONFIG":
              "/nonexistent/gcloud", "CONNECTOR_ENV_FILE": os.devnull, **env}
    return subprocess.run([*(python or [sys.executable]), "-m", *args], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [
    ("deploy.locks", "show", "--project", "demo"),
    ("deploy.deadletters", "list", "--project", "demo", "--wait", "1"),
])
def test_missing_credentials_are_one_line_naming_the_fix(args: tuple[str, ...]) -> None:
    result = tool(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ") and "gcloud auth application-default login" in lines[0]


def test_outside_the_venv_the_tool_says_so() -> None:
    # -S: no site-packages, as with a system python that lacks the connector's dependencies
    result = tool("deploy.deadletters", "list", "--project", "demo", python=[sys.executable, "-S"])
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "venv" in result.stderr and ".venv/bin/python -m deploy.deadletters" in result.stderr


def test_a_release_is_audited_with_the_operator(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcloud: the local user name is the operator
    monkeypatch.setenv("USER", "oncall")
    path = tmp_path / "state.json"
    store = MemoryStore(path)
    job = store.create("orders", ids=None, delete_all=False, now=utcnow() - timedelta(hours=1),
                       lease=timedelta(minutes=15), started_by="ops@shop.example").job
    assert locks.main(["release", "orders", "--yes", "--local-state", str(path)]) == 0
    released = MemoryStore(path).get_job(job.id)
    assert released is not None
    assert released.startedBy == "ops@shop.example" and released.stoppedBy == "local:oncall"
    audit = [r for r in caplog.records if r.getMessage() == "bulk audit"][-1]
    fields = vars(audit)  # the structured fields ride on the record
    assert tuple(fields[k] for k in ("action", "caller", "kind", "jobId", "outcome")) == (
        "release", "local:oncall", "orders", job.id, "released")
    assert json.loads(json.dumps(released.public()))["stoppedBy"] == "local:oncall"
