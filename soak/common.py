"""What both soak runs share: emulators, fakes, served functions, Pub/Sub wiring, figures."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "demo-connector"  # the emulators' project (tests/emulators.py)
# The retry and dead-letter policy deploy/deploy.sh puts on both trigger subscriptions
# (tests/snapshots/deploy_dryrun.txt): 100 deliveries, backoff 10 s .. 600 s, ack deadline 600 s.
MAX_DELIVERY_ATTEMPTS = 100
MIN_BACKOFF_SECONDS = 10
MAX_BACKOFF_SECONDS = 600
ACK_DEADLINE_SECONDS = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None,
              timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


@contextmanager
def emulators(*, pubsub: str | None = None, firestore: str | None = None,
              need_firestore: bool = False) -> Iterator[tuple[str, str | None]]:
    """The given emulator hosts, or emulators started here (stopped on exit)."""
    from tests.emulators import FIRESTORE_BIN, PUBSUB_BIN, Emulator

    with ExitStack() as stack:
        logs = stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-emulators-"))
        if pubsub is None:
            with open(Path(logs) / "pubsub.log", "wb") as log:  # the emulator keeps its copy
                emulator = Emulator(PUBSUB_BIN, log)
            stack.callback(emulator.stop)
            pubsub = emulator.host
        if firestore is None and need_firestore:
            with open(Path(logs) / "firestore.log", "wb") as log:
                emulator = Emulator(FIRESTORE_BIN, log)
            stack.callback(emulator.stop)
            firestore = emulator.host
        yield pubsub, firestore


@contextmanager
def emulator_env(pubsub: str, firestore: str | None) -> Iterator[None]:
    """Point the Google client libraries of this process at the emulators."""
    saved = {k: os.environ.get(k) for k in ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST")}
    os.environ["PUBSUB_EMULATOR_HOST"] = pubsub
    if firestore:
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Served:
    """`python -m soak.serve ...` in its own process group (gunicorn master + worker)."""

    def __init__(self, target: str, source: str, env: dict[str, str], workdir: Path,
                 name: str, *extra: str, port: int | None = None) -> None:
        self.target, self.source, self.env, self.extra = target, source, env, extra
        self.port = port or free_port()
        self.record = workdir / f"{name}-deliveries.jsonl"
        self.log_path = workdir / f"{name}.log"
        self.record.touch()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "soak.serve", "--target", self.target, "--source",
             self.source, "--port", str(self.port), "--record", str(self.record), *self.extra],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        wait_port(self.port, self.proc)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: master and worker die at once, mid-request or not."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self.kill()


def function_env(ct: Any, klaviyo: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CTP_", "KLAVIYO_", "BULK_", "REALTIME_", "GOOGLE_"))}
    env.update({
        "CONNECTOR_ENV_FILE": os.devnull,
        "CTP_PROJECT_KEY": ct.project_key, "CTP_CLIENT_ID": ct.client_id,
        "CTP_CLIENT_SECRET": ct.client_secret, "CTP_SCOPES": " ".join(ct.scopes),
        "CTP_API_URL": ct.url, "CTP_AUTH_URL": ct.auth_url,
        "KLAVIYO_API_KEY": klaviyo.api_key, "KLAVIYO_BASE_URL": klaviyo.url,
        "PREFERRED_LOCALE": "en", "PREFERRED_CURRENCY": "EUR",
        "PRODUCT_URL_TEMPLATE": "https://shop.example/p/{slug}?sku={sku}",
        "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
        **extra,
    })
    return env


def settings_from(env: dict[str, str]) -> Any:
    from shared.config import Settings, load_settings

    fields = Settings.model_fields
    return load_settings(**{k.lower(): v for k, v in env.items() if k.lower() in fields})


def ct_client(ct: Any) -> Any:
    from shared.commercetools import CommercetoolsClient

    return CommercetoolsClient(project_key=ct.project_key, client_id=ct.client_id,
                               client_secret=ct.client_secret, api_url=ct.url,
                               auth_url=ct.auth_url, scopes=ct.scopes)


def push_subscription(subscriber: Any, topic: str, endpoint: str, dead_letter_topic: str, *,
                      max_attempts: int = MAX_DELIVERY_ATTEMPTS,
                      min_backoff: int = MIN_BACKOFF_SECONDS,
                      ack_deadline: int = ACK_DEADLINE_SECONDS) -> str:
    """A push subscription with deploy's retry and dead-letter policy.

    `ack_deadline`: the emulator redelivers a push whose connection was cut (a worker killed
    mid-request) only once the ack deadline has passed, so with deploy's 600 s one kill stalls
    that message for ten minutes; soaks pass a deadline just above their function's own.
    """
    from google.protobuf import duration_pb2

    name = subscriber.subscription_path(PROJECT, f"soak-push-{uuid.uuid4().hex[:10]}")
    subscriber.create_subscription(request={
        "name": name, "topic": topic, "push_config": {"push_endpoint": endpoint},
        "ack_deadline_seconds": ack_deadline,
        "retry_policy": {"minimum_backoff": duration_pb2.Duration(seconds=min_backoff),
                         "maximum_backoff": duration_pb2.Duration(seconds=MAX_BACKOFF_SECONDS)},
        "dead_letter_policy": {"dead_letter_topic": dead_letter_topic,
                               "max_delivery_attempts": max_attempts},
    })
    return name


@dataclass
class Topics:
    """Topics and subscriptions made for one run (deleted afterwards: the emulator keeps them)."""

    publisher: Any
    subscriber: Any
    topics: list[str] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)

    def topic(self, prefix: str) -> str:
        name = self.publisher.topic_path(PROJECT, f"{prefix}-{uuid.uuid4().hex[:10]}")
        self.publisher.create_topic(name=name)
        self.topics.append(name)
        return name

    def pull_subscription(self, topic: str) -> str:
        name = self.subscriber.subscription_path(PROJECT, f"soak-pull-{uuid.uuid4().hex[:10]}")
        self.subscriber.create_subscription(name=name, topic=topic, ack_deadline_seconds=60)
        self.subscriptions.append(name)
        return name

    def push(self, topic: str, endpoint: str, dead_letter_topic: str, **policy: int) -> str:
        name = push_subscription(self.subscriber, topic, endpoint, dead_letter_topic, **policy)
        self.subscriptions.append(name)
        return name

    def stop_pushing(self) -> None:
        for name in list(self.subscriptions):
            if "soak-push-" in name:
                self._delete(name)

    def _delete(self, name: str) -> None:
        try:
            self.subscriber.delete_subscription(subscription=name)
        except Exception:  # already gone
            pass
        if name in self.subscriptions:
            self.subscriptions.remove(name)

    def close(self) -> None:
        for name in list(self.subscriptions):
            self._delete(name)
        for name in self.topics:
            try:
                self.publisher.delete_topic(topic=name)
            except Exception:
                pass

    def pull_all(self, subscription: str, *, timeout: float = 2.0) -> list[Any]:
        """Pull and ack whatever the subscription holds now (bounded)."""
        received: list[Any] = []
        for _ in range(100):
            response = self.subscriber.pull(subscription=subscription, max_messages=100,
                                            timeout=timeout, return_immediately=True)
            messages = list(response.received_messages)
            if not messages:
                break
            self.subscriber.acknowledge(subscription=subscription,
                                        ack_ids=[m.ack_id for m in messages])
            received.extend(messages)
        return received


class RecordReader:
    """Reads the lines a Served process appends, incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.rows: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        with open(self.path, encoding="utf-8") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind("\n") + 1
        self._offset += len(chunk[:end].encode("utf-8"))
        new = [json.loads(line) for line in chunk[:end].splitlines() if line.strip()]
        self.rows.extend(new)
        return new


def log_counts(path: Path, messages: tuple[str, ...]) -> dict[str, int]:
    counts = dict.fromkeys(messages, 0)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("{"):
                continue
            try:
                message = json.loads(line).get("message")
            except ValueError:
                continue
            if message in counts:
                counts[message] += 1
    return counts


def seconds(value: float) -> str:
    return f"{value:.1f} s"
