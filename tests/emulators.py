"""Pytest fixtures that run Google's own Firestore and Pub/Sub emulators (shipped on the image).

Each emulator starts once per test session on a free loopback port, in its own process group so
the launcher script and its JVM are stopped together. The emulators cannot be installed from any
reachable registry, so a missing binary fails loudly instead of skipping silently.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

SDK = os.environ.get("GCLOUD_SDK_ROOT", "/usr/lib/google-cloud-sdk")
FIRESTORE_BIN = f"{SDK}/platform/cloud-firestore-emulator/cloud_firestore_emulator"
PUBSUB_BIN = f"{SDK}/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
PROJECT = "demo-connector"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"emulator not ready at {url}")


class Emulator:
    def __init__(self, binary: str, log: IO[bytes]) -> None:
        if not os.path.exists(binary):
            pytest.fail(f"{binary} is missing: "
                        "the google-cloud-cli emulators are not on this machine")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, "--host=127.0.0.1", f"--port={self.port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_http(f"http://{self.host}/", self.proc)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def _log_file(tmp_path_factory: pytest.TempPathFactory, name: str) -> IO[bytes]:
    path: Path = tmp_path_factory.mktemp(name) / f"{name}.log"
    return path.open("wb")


def _serve(binary: str, env_var: str, name: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run one emulator for the session with `env_var` pointing at it, restored afterwards."""
    with _log_file(tmp_path_factory, name) as log:  # the emulator writes to its own copy
        emulator = Emulator(binary, log)
    previous = os.environ.get(env_var)
    os.environ[env_var] = emulator.host
    yield emulator.host
    emulator.stop()
    if previous is None:
        os.environ.pop(env_var, None)
    else:
        os.environ[env_var] = previous


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(FIRESTORE_BIN, "FIRESTORE_EMULATOR_HOST", "firestore", tmp_path_factory)


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(PUBSUB_BIN, "PUBSUB_EMULATOR_HOST", "pubsub", tmp_path_factory)


@pytest.fixture
def firestore_db(firestore_emulator: str) -> Iterator[Any]:
    """A Firestore client on the emulator; every document is wiped after the test."""
    from google.cloud import firestore

    yield firestore.Client(project=PROJECT)
    request = urllib.request.Request(
        f"http://{firestore_emulator}/emulator/v1/projects/{PROJECT}/databases/(default)/documents",
        method="DELETE",
    )
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def pubsub_topic(pubsub_emulator: str) -> Iterator[str]:
    """A fresh topic (the emulator has no reset): yields its full path; deleted afterwards."""
    from google.cloud.pubsub_v1 import PublisherClient

    publisher = PublisherClient()
    topic = publisher.topic_path(PROJECT, f"t-{uuid.uuid4().hex[:10]}")
    publisher.create_topic(name=topic)
    yield topic
    publisher.delete_topic(topic=topic)
