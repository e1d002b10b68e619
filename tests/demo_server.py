"""`python -m deploy.local` (what `make run` starts) in its own process on a free port, as a
user on a fresh clone would run it: no `.env`, none of the connector's variables unless given."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
_CONNECTOR_PREFIXES = ("CTP_", "KLAVIYO_", "BULK_", "GOOGLE_CLOUD_PROJECT", "FIRESTORE_",
                       "PUBSUB_", "K_SERVICE", "FUNCTION_TARGET", "LOG_LEVEL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_environment(extra: Mapping[str, str] = {}) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONNECTOR_PREFIXES)}
    env.update(PYTHONPATH=str(ROOT), CONNECTOR_ENV_FILE=os.devnull, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class LocalServer:
    """A started process; `lines` collects its stderr (the banner, request log)."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, port: int
                 ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self.stdout: list[str] = []
        self.process = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stderr, self.lines),
                             daemon=True),
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout),
                             daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_for(self, text: str | None, timeout: float = 60.0) -> None:
        """Until `text` is on stderr (None: only until the port answers)."""
        deadline = time.monotonic() + timeout
        while text is not None and not any(text in line for line in self.lines):
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode}: {self.lines}")
            assert time.monotonic() < deadline, self.lines
            time.sleep(0.05)
        while True:  # listening once the banner is out; make sure of it
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode}: {self.lines}")
            try:
                requests.get(self.url + "/sync/jobs/none", timeout=2).close()
                return
            except requests.ConnectionError:
                assert time.monotonic() < deadline, self.lines
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: make and its child
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    # -- helpers ------------------------------------------------------------------------------

    def get(self, path: str) -> Any:
        response = requests.get(self.url + path, timeout=30)
        try:
            return response.status_code, (response.json() if "json" in
                                          response.headers.get("Content-Type", "") else
                                          response.text)
        finally:
            response.close()

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        response = requests.post(self.url + path, json=body, timeout=60)
        try:
            return response.status_code, response.json()
        finally:
            response.close()

    def wait_job(self, kind: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, job = self.get(f"/sync/{kind}")
            if status == 200 and job["status"] not in ("queued", "running", "stopping"):
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.1)


def start_local(tmp: Path, env: Mapping[str, str] = {}, args: Sequence[str] = ()) -> LocalServer:
    port = free_port()
    server = LocalServer([sys.executable, "-m", "deploy.local", "--port", str(port), *args],
                         env=clean_environment(env), cwd=tmp, port=port)
    return server
