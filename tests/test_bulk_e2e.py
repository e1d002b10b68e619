"""End to end: `bulk/main.py` served by functions-framework, job state in the Firestore emulator,
page tasks on a Pub/Sub emulator topic pulled and delivered to `run_page_task` as real
CloudEvents, the real exporters reading the commercetools fake and writing the Klaviyo fake.
Plus the same code in local mode: the local server (`deploy/local.py`) and the CLI."""

from __future__ import annotations

import base64
import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app

from shared.config import get_settings
from shared.state import Job, JobStatus
from shared.state.jobs import LEASE_EXPIRED
from shared.state.store import JobStore
from tests.emulators import PROJECT

ROOT = Path(__file__).resolve().parents[1]
BULK_SOURCE = str(ROOT / "bulk" / "main.py")


# ---- commercetools data ----------------------------------------------------------------------


def add_customers(ct: Any, n: int, prefix: str = "cust") -> list[str]:
    ids = []
    for i in range(n):
        doc = ct.add("customers", {"id": f"{prefix}-{i:03d}", "email": f"{prefix}{i}@example.com",
                                   "firstName": f"First{i}", "lastName": "Last",
                                   "addresses": []})
        ids.append(doc["id"])
    return ids


def add_categories(ct: Any, n: int) -> list[str]:
    ids = []
    for i in range(n):
        doc = ct.add("categories", {"id": f"cat-{i:03d}", "name": {"en": f"Category {i}"},
                                    "slug": {"en": f"category-{i}"}, "ancestors": []})
        ids.append(doc["id"])
    return ids


def profile_external_ids(klaviyo: Any) -> list[str]:
    return sorted(p["attributes"].get("external_id") for p in klaviyo.profiles.values())


def category_ids(klaviyo: Any) -> list[str]:
    return sorted(c["id"].split(":::")[-1] for c in klaviyo.categories.values())


# ---- the harness -----------------------------------------------------------------------------


def fresh_rate_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The functions built next get their own Klaviyo rate limiter (as a new instance would),
    not the process-wide one that earlier tests have been drawing on."""
    from shared.klaviyo import limiter

    monkeypatch.setattr(limiter, "_shared", None)


class Bulk:
    """The two functions of bulk/main.py, and the task subscription between them."""

    def __init__(self, api: Any, worker: Any, subscriber: Any, subscription: str,
                 store: JobStore) -> None:
        self.api = api
        self.worker = worker
        self.subscriber = subscriber
        self.subscription = subscription
        self.store = store
        self.deliveries: list[int] = []
        self._structured = False

    def post(self, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        response = self.api.post(path, json=body) if body is not None else self.api.post(path)
        return response.status_code, response.get_json()

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        response = self.api.get(path)
        return response.status_code, response.get_json()

    def job(self, job_id: str) -> Job:
        job = self.store.get_job(job_id)
        assert job is not None
        return job

    def pull(self, timeout: float = 5.0) -> list[Any]:
        response = self.subscriber.pull(subscription=self.subscription, max_messages=10,
                                        timeout=timeout)
        return list(response.received_messages)

    def deliver(self, received: Any) -> int:
        """POST the pulled message to run_page_task as a Pub/Sub CloudEvent (binary and
        structured mode alternately); ack on 2xx, nack (redeliver now) otherwise."""
        message = received.message
        event = CloudEvent(
            {"type": "google.cloud.pubsub.topic.v1.messagePublished",
             "source": "//pubsub.googleapis.com/"
                       + self.subscription.replace('subscriptions', 'topics'),
             "id": message.message_id},
            {"message": {"data": base64.b64encode(message.data).decode(),
                         "attributes": dict(message.attributes),
                         "messageId": message.message_id,
                         "publishTime": message.publish_time.isoformat()},
             "subscription": self.subscription},
        )
        self._structured = not self._structured
        headers, body = to_structured(event) if self._structured else to_binary(event)
        status = self.worker.post("/", headers=headers, data=body).status_code
        self.deliveries.append(status)
        if status < 300:
            self.subscriber.acknowledge(subscription=self.subscription, ack_ids=[received.ack_id])
        else:
            self.subscriber.modify_ack_deadline(subscription=self.subscription,
                                                ack_ids=[received.ack_id], ack_deadline_seconds=0)
        return status

    def pump(self, job_id: str, *, max_tasks: int = 60, until: Callable[[Job], bool] | None = None,
             timeout: float = 30.0) -> Job:
        """Deliver tasks until the job ends (or `until(job)`); returns the job."""
        done = until or (lambda job: not job.live)
        deadline = time.monotonic() + timeout
        while not done(job := self.job(job_id)):
            assert max_tasks > 0 and time.monotonic() < deadline, f"job stuck: {job}"
            for received in self.pull():
                self.deliver(received)
                max_tasks -= 1
                if done(self.job(job_id)):
                    break
        return self.job(job_id)


@pytest.fixture
def make_bulk(
    ct_env: dict[str, str], klaviyo: Any, pubsub_topic: str, firestore_db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Bulk]]:
    from google.cloud import pubsub_v1

    from shared.state.firestore_store import FirestoreStore

    subscriber = pubsub_v1.SubscriberClient()
    subscriptions: list[str] = []

    def make(**env: str) -> Bulk:
        prefix = f"e2e{uuid.uuid4().hex[:6]}_"
        variables = {
            **ct_env,
            "KLAVIYO_API_KEY": klaviyo.api_key,
            "KLAVIYO_BASE_URL": klaviyo.url,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "BULK_TASKS_TOPIC": pubsub_topic,
            "BULK_COLLECTION_PREFIX": prefix,
            "BULK_PAGE_SIZE": "2",
            "BULK_JOB_POLL_SECONDS": "0.01",
            "BULK_BATCH_DEADLINE_SECONDS": "20",
            "BULK_LEASE_SECONDS": "60",
            # One chain per job, as these tests' cursors and deliveries expect (partitions:
            # tests/test_bulk_partitions.py).
            "BULK_PARTITIONS_CUSTOMERS": "1", "BULK_PARTITIONS_ORDERS": "1",
            **env,
        }
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("BULK_BACKEND", raising=False)
        fresh_rate_limiter(monkeypatch)
        get_settings.cache_clear()
        klaviyo.job_status_sequence = []  # catalog jobs complete at the first poll
        subscription = subscriber.subscription_path(PROJECT, f"s-{uuid.uuid4().hex[:10]}")
        subscriber.create_subscription(name=subscription, topic=pubsub_topic,
                                       ack_deadline_seconds=10)
        subscriptions.append(subscription)
        api = create_app("sync_api", BULK_SOURCE).test_client()
        worker = create_app("run_page_task", BULK_SOURCE).test_client()
        return Bulk(api, worker, subscriber, subscription, FirestoreStore(firestore_db,
                                                                          prefix=prefix))

    yield make
    for subscription in subscriptions:
        subscriber.delete_subscription(subscription=subscription)
    get_settings.cache_clear()


# ---- cloud mode: emulators -------------------------------------------------------------------


@pytest.mark.emulator
def test_customers_sync_through_pubsub_tasks(make_bulk: Callable[..., Bulk], ct: Any,
                                             klaviyo: Any) -> None:
    ids = add_customers(ct, 5)
    ct.add("customers", {"id": "cust-900", "addresses": []})  # no email: skipped
    bulk = make_bulk()
    status, body = bulk.post("/sync/customers")
    assert status == 202
    job = bulk.pump(body["jobId"])
    assert job.status == JobStatus.COMPLETED, job
    assert job.counts.model_dump() == {"read": 6, "sent": 5, "skipped": 1, "failed": 0,
                                       "deleted": 0}
    assert profile_external_ids(klaviyo) == ids
    status, view = bulk.get("/sync/customers")
    assert status == 200 and view["jobId"] == body["jobId"] and view["status"] == "completed"
    assert view["cursor"] == "cust-900" and view["startedAt"] and view["finishedAt"]
    assert bulk.deliveries == [200]  # one batch, acknowledged


@pytest.mark.emulator
def test_eight_concurrent_starts_one_wins(make_bulk: Callable[..., Bulk], ct: Any) -> None:
    add_customers(ct, 2)
    bulk = make_bulk()
    barrier = threading.Barrier(8)
    results: list[tuple[int, dict[str, Any]]] = []

    def start() -> None:
        client = bulk.api.application.test_client()
        barrier.wait()
        response = client.post("/sync/customers")
        results.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(status for status, _ in results)
    assert statuses == [202] + [409] * 7, results
    winner = next(body["jobId"] for status, body in results if status == 202)
    assert all(body["jobId"] == winner for status, body in results if status == 409)
    assert bulk.pump(winner).status == JobStatus.COMPLETED


@pytest.mark.emulator
def test_categories_page_across_batches(make_bulk: Callable[..., Bulk], ct: Any,
                                        klaviyo: Any) -> None:
    ids = add_categories(ct, 5)
    bulk = make_bulk()  # BULK_PAGE_SIZE=2: batches of 2, 2, 1
    job_id = bulk.post("/sync/categories")[1]["jobId"]
    job = bulk.pump(job_id)
    assert job.status == JobStatus.COMPLETED and job.seq == 3 and job.cursor == "cat-004"
    assert job.counts.read == job.counts.sent == 5
    assert category_ids(klaviyo) == ids
    assert len(bulk.deliveries) == 3


@pytest.mark.emulator
def test_stop_mid_job(make_bulk: Callable[..., Bulk], ct: Any, klaviyo: Any) -> None:
    add_categories(ct, 6)
    bulk = make_bulk()
    job_id = bulk.post("/sync/categories")[1]["jobId"]
    bulk.pump(job_id, until=lambda job: job.seq == 1)
    status, view = bulk.post("/sync/categories/stop")
    assert status == 200 and view["status"] == "stopping" and view["jobId"] == job_id
    assert bulk.post("/sync/categories")[0] == 409  # still live until its next batch
    job = bulk.pump(job_id)
    assert job.status == JobStatus.STOPPED and job.cursor == "cat-001"
    assert category_ids(klaviyo) == ["cat-000", "cat-001"]  # nothing after the boundary
    status, ended = bulk.post("/sync/categories/stop")  # after it ended: how it ended
    assert status == 200 and ended["status"] == "stopped"
    status, again = bulk.post("/sync/categories")
    assert status == 202 and again["jobId"] != job_id


@pytest.mark.emulator
@pytest.mark.parametrize("kind, kill_at", [("customers", 0), ("categories", 1)])
def test_worker_killed_between_sending_and_saving(
    make_bulk: Callable[..., Bulk], ct: Any, klaviyo: Any, monkeypatch: pytest.MonkeyPatch,
    kind: str, kill_at: int,
) -> None:
    ids = add_customers(ct, 5) if kind == "customers" else add_categories(ct, 5)
    bulk = make_bulk()
    from shared.state.store import JobStore as StoreClass

    real_save = StoreClass.save_batch
    killed: list[int] = []

    def save_or_die(self: Any, job_id: str, **kw: Any) -> Any:
        if kw["seq"] == kill_at and not killed:
            killed.append(kw["seq"])  # the batch reached Klaviyo; the instance dies now
            raise RuntimeError("instance killed before saving the cursor")
        return real_save(self, job_id, **kw)

    monkeypatch.setattr(StoreClass, "save_batch", save_or_die)
    job_id = bulk.post(f"/sync/{kind}")[1]["jobId"]
    job = bulk.pump(job_id)
    assert killed == [kill_at] and 500 in bulk.deliveries  # nacked, then redelivered
    assert job.status == JobStatus.COMPLETED, job
    assert job.counts.read == job.counts.sent == 5 and job.counts.failed == 0  # no double count
    if kind == "customers":
        assert profile_external_ids(klaviyo) == ids  # every profile exactly once
        assert len(klaviyo.requests_to("POST", "/api/profile-bulk-import-jobs")) == 2
    else:
        assert category_ids(klaviyo) == ids
        assert len(klaviyo.categories) == 5


@pytest.mark.emulator
def test_expired_lease_is_taken_over(make_bulk: Callable[..., Bulk], ct: Any,
                                     klaviyo: Any) -> None:
    ids = add_customers(ct, 3)
    bulk = make_bulk(BULK_BATCH_DEADLINE_SECONDS="1", BULK_LEASE_SECONDS="1.2")
    dead = bulk.post("/sync/customers")[1]["jobId"]  # its worker never runs
    assert bulk.post("/sync/customers")[0] == 409
    time.sleep(1.3)  # the lease lapses
    status, view = bulk.get(f"/sync/jobs/{dead}")
    assert view["status"] == "queued" and view["leaseExpired"] is True
    status, body = bulk.post("/sync/customers")
    assert status == 202 and body["jobId"] != dead
    old = bulk.job(dead)
    assert old.status == JobStatus.FAILED and old.reason == LEASE_EXPIRED
    job = bulk.pump(body["jobId"])  # the dead job's task is delivered too: a no-op
    assert job.status == JobStatus.COMPLETED and profile_external_ids(klaviyo) == ids
    assert bulk.job(dead).counts.read == 0


@pytest.mark.emulator
def test_partial_sync_by_ids(make_bulk: Callable[..., Bulk], ct: Any, klaviyo: Any) -> None:
    ids = add_customers(ct, 6)
    bulk = make_bulk()
    wanted = [ids[4], ids[1], "no-such-customer", ids[4]]
    status, body = bulk.post("/sync/customers", {"ids": wanted})
    assert status == 202
    job = bulk.pump(body["jobId"])
    assert job.status == JobStatus.COMPLETED and job.idCount == 3
    assert profile_external_ids(klaviyo) == sorted([ids[1], ids[4]])
    assert job.counts.read == job.counts.sent == 2


@pytest.mark.emulator
def test_partial_orders_sync_by_ids(make_bulk: Callable[..., Bulk], ct: Any, klaviyo: Any) -> None:
    money = {"type": "centPrecision", "currencyCode": "EUR", "centAmount": 1250,
             "fractionDigits": 2}
    for i in range(4):
        ct.add("orders", {"id": f"ord-{i}", "orderNumber": f"N{i}", "customerEmail":
                          f"buyer{i}@example.com", "orderState": "Open", "totalPrice": money,
                          "lineItems": [], "createdAt": f"2026-01-0{i + 1}T10:00:00.000Z"})
    bulk = make_bulk()
    status, body = bulk.post("/sync/orders", {"ids": ["ord-3", "ord-1"]})
    assert status == 202
    job = bulk.pump(body["jobId"])
    assert job.status == JobStatus.COMPLETED and job.counts.read == 2, job
    orders = {e["attributes"]["unique_id"].split(":")[0] for e in klaviyo.events}
    assert orders and all(o in ("ord-1", "ord-3") or "ord-1" in o or "ord-3" in o
                          for o in orders), orders
    assert {"ord-0", "ord-2"}.isdisjoint(orders)


RETRY_CODES = {"throttled", "DeadlineExceeded"}


@pytest.mark.emulator
def test_klaviyo_429_storm(make_bulk: Callable[..., Bulk], ct: Any, klaviyo: Any) -> None:
    ids = add_customers(ct, 5)
    bulk = make_bulk(BULK_BATCH_DEADLINE_SECONDS="0.5", BULK_MAX_BATCH_ATTEMPTS="4")
    # A storm longer than the batch's time: the task fails, Pub/Sub redelivers, the batch is
    # re-sent once the storm passes, and it is counted once.
    klaviyo.inject(429, times=10_000, path="/api/profile-bulk-import-jobs")
    job_id = bulk.post("/sync/customers")[1]["jobId"]
    job = bulk.pump(job_id, until=lambda job: job.attempts == 2)
    # (the error code is Klaviyo's, unless an attempt ran out of time before any answer)
    assert job.live and job.errorCode in RETRY_CODES and bulk.deliveries == [500, 500]
    klaviyo.faults.clear()  # the storm passes
    job = bulk.pump(job_id)
    assert job.status == JobStatus.COMPLETED and bulk.deliveries == [500, 500, 200]
    assert job.counts.sent == 5 and job.attempts == 0 and profile_external_ids(klaviyo) == ids
    assert job.errorCode is None
    # A storm that outlasts BULK_MAX_BATCH_ATTEMPTS ends the job (lock released), not a loop.
    klaviyo.inject(429, times=10_000, path="/api/profile-bulk-import-jobs")
    job = bulk.pump(bulk.post("/sync/customers")[1]["jobId"])
    assert job.status == JobStatus.FAILED and job.errorCode in RETRY_CODES, job
    assert job.reason == "batch 0 failed 4 times"
    klaviyo.faults.clear()
    assert bulk.post("/sync/customers")[0] == 202


@pytest.mark.emulator
def test_delete_all_needs_confirmation_then_deletes_and_resyncs(
    make_bulk: Callable[..., Bulk], ct: Any, klaviyo: Any
) -> None:
    ids = add_categories(ct, 4)
    bulk = make_bulk()
    assert bulk.pump(bulk.post("/sync/categories")[1]["jobId"]).status == JobStatus.COMPLETED
    assert category_ids(klaviyo) == ids
    for gone in ids[2:]:
        ct.delete("categories", gone)  # deleted in CT: Klaviyo keeps them until deleteAll

    status, body = bulk.post("/sync/categories", {"deleteAll": True})
    assert status == 400 and 'confirmDeletion": "categories"' in body["message"]
    status, body = bulk.post("/sync/categories", {"deleteAll": True, "confirmDeletion": "products"})
    assert status == 400
    assert category_ids(klaviyo) == ids and bulk.get("/sync/categories")[1]["deleteAll"] is False

    status, body = bulk.post("/sync/categories", {"deleteAll": True,
                                                  "confirmDeletion": "categories"})
    assert status == 202
    job = bulk.pump(body["jobId"])
    assert job.status == JobStatus.COMPLETED and job.deleteAll
    assert job.counts.deleted == 4 and job.counts.sent == 2
    assert category_ids(klaviyo) == ids[:2]


# ---- local mode: no cloud --------------------------------------------------------------------


@pytest.fixture
def local_env(ct_env: dict[str, str], klaviyo: Any, monkeypatch: pytest.MonkeyPatch,
              tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "bulk-state.json"
    for name in ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
                 "K_SERVICE", "BULK_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    variables = {**ct_env, "KLAVIYO_API_KEY": klaviyo.api_key, "KLAVIYO_BASE_URL": klaviyo.url,
                 "BULK_LOCAL_STATE_FILE": str(state), "BULK_PAGE_SIZE": "2",
                 "BULK_JOB_POLL_SECONDS": "0.01"}
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    fresh_rate_limiter(monkeypatch)
    get_settings.cache_clear()
    klaviyo.job_status_sequence = []
    yield state
    get_settings.cache_clear()


def test_local_server_runs_a_sync_in_process(local_env: Path, ct: Any, klaviyo: Any) -> None:
    from werkzeug.test import Client

    from deploy.local import build_app

    ids = add_customers(ct, 4)
    client = Client(build_app())
    response = client.post("/sync/customers", json={"ids": ids[:3]})
    assert response.status_code == 202, response.get_data()
    job_id = response.get_json()["jobId"]
    deadline = time.monotonic() + 15
    while (view := client.get(f"/sync/jobs/{job_id}").get_json())["status"] != "completed":
        assert time.monotonic() < deadline, view
        time.sleep(0.05)
    assert view["counts"]["sent"] == 3 and profile_external_ids(klaviyo) == ids[:3]
    assert client.get("/sync/orders").status_code == 404


def test_cli_sync_status_and_errors(local_env: Path, ct: Any, klaviyo: Any) -> None:
    from bulk.__main__ import main

    ids = add_categories(ct, 5)
    out, err = io.StringIO(), io.StringIO()
    assert main(["sync", "categories"], out=out, err=err) == 0, err.getvalue()
    assert "categories sync completed" in out.getvalue()
    assert "read 5  sent 5  skipped 0  failed 0" in out.getvalue()
    progress = err.getvalue().replace("\r", "\n").splitlines()  # tqdm's bar, total counted
    assert any("100%" in line and "5/5" in line and "status=completed" in line
               for line in progress), progress
    assert category_ids(klaviyo) == ids

    out = io.StringIO()
    assert main(["status", "categories", "--json"], out=out, err=err) == 0
    assert '"status": "completed"' in out.getvalue()

    err = io.StringIO()
    assert main(["sync", "customers", "--ids", ""], out=out, err=err) == 2
    assert "ids[0] must not be empty" in err.getvalue()
    assert main(["sync", "customers", "--delete-all"], out=out, err=io.StringIO()) == 2
    err = io.StringIO()
    assert main(["sync", "categories", "--delete-all"], out=out, err=err) == 2  # no tty, no --yes
    assert "--yes" in err.getvalue()

    customers = add_customers(ct, 3)
    out = io.StringIO()
    assert main(["sync", "customers", "--ids", customers[0], customers[2], "--no-progress"],
                out=out, err=io.StringIO()) == 0
    assert profile_external_ids(klaviyo) == [customers[0], customers[2]]
    assert main(["stop", "customers"], out=out, err=io.StringIO()) == 1  # nothing runs
