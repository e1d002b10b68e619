"""The bulk soak: customers and orders imported through the bulk functions while their page worker
is killed at random points and both fakes inject faults.

- `sync_api` and `run_page_task` each run under functions-framework in their own process
  (soak/serve.py); job state and the lock are in the Firestore emulator; page tasks go through a
  Pub/Sub emulator topic whose push subscription (deploy's retry and dead-letter policy) delivers
  them to the worker.
- The worker dies (os._exit: no clean-up) with some probability right before it saves a batch it
  has already sent to Klaviyo, and right before it queues the next task; gunicorn starts a new
  worker process. On top of that the driver SIGKILLs the whole worker (master included) at random
  moments and starts it again on the same port.
- Batches are smaller than in production (soak/serve.py `_scale_batches`) so a CI-sized job has
  dozens of batches, each a point where the worker can die.
- When both jobs have ended: both must be `completed`, their counts exactly what commercetools'
  data implies (read = documents, skipped = customers without an email, failed = unreadable
  documents and the records Klaviyo refuses, sent = the rest), and Klaviyo's profiles and events
  exactly what that data maps to (nothing missing, nothing twice).
"""

from __future__ import annotations

import json
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from soak.common import (
    ROOT,
    RecordReader,
    Served,
    Topics,
    ct_client,
    emulator_env,
    emulators,
    function_env,
    seconds,
    settings_from,
)
from soak.expected import compare, expected_state, klaviyo_state
from soak.realtime import Report, _load
from soak.world import World, bulk_world

BULK_SOURCE = str(ROOT / "bulk" / "main.py")
EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"  # what the Klaviyo fake accepts


@dataclass
class BulkConfig:
    customers: int = 720
    orders: int = 480
    seed: int = 1
    klaviyo_fault_rate: float = 0.15
    ct_fault_rate: float = 0.03
    die_before_save: float = 0.25
    die_before_publish: float = 0.1
    max_kills: int = 4  # SIGKILLs of the whole worker by the driver
    page_size: int = 25
    customers_batch: int = 60
    order_events_batch: int = 150
    timeout: float = 600.0
    workdir: str | None = None


def expected_counts(world: World) -> dict[str, dict[str, int]]:
    customers = world.final["customers"]
    invalid = world.invalid.get("customers", set())
    no_email = [c for i, c in customers.items() if i not in invalid and not c.get("email")]
    refused = [c for i, c in customers.items() if i not in invalid and c.get("email")
               and not re.match(EMAIL_RE, c["email"])]
    failed = len(invalid) + len(refused)
    orders = world.final["orders"]
    bad_orders = len(world.invalid.get("orders", set()))
    return {
        "customers": {"read": len(customers), "sent": len(customers) - len(no_email) - failed,
                      "skipped": len(no_email), "failed": failed, "deleted": 0},
        "orders": {"read": len(orders), "sent": len(orders) - bad_orders, "skipped": 0,
                   "failed": bad_orders, "deleted": 0},
    }


def run_bulk(config: BulkConfig, *, pubsub_host: str | None = None,
             firestore_host: str | None = None,
             progress: Callable[[str], None] | None = None) -> Report:
    from tests.fakes.commercetools import FakeCommercetools
    from tests.fakes.klaviyo import FakeKlaviyo

    say = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    world = bulk_world(config.customers, config.orders, config.seed)
    klaviyo, ct = FakeKlaviyo().start(), FakeCommercetools().start()
    klaviyo.job_status_sequence = []
    tmp = None if config.workdir else tempfile.TemporaryDirectory(prefix="soak-bulk-")
    workdir = Path(config.workdir or tmp.name)  # type: ignore[union-attr]
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        _load(ct, world.final)
        with emulators(pubsub=pubsub_host, firestore=firestore_host, need_firestore=True) as (
                pubsub, firestore), emulator_env(pubsub, firestore):
            assert firestore is not None
            return _run(config, world, klaviyo, ct, pubsub, firestore, workdir, say)
    finally:
        klaviyo.stop()
        ct.stop()
        if tmp is not None:
            tmp.cleanup()


def _run(config: BulkConfig, world: World, klaviyo: Any, ct: Any, pubsub: str, firestore: str,
         workdir: Path, say: Callable[[str], None]) -> Report:
    from google.cloud import pubsub_v1

    from tests.fakes.chaos import CT_MIX, KLAVIYO_MIX, RandomFaults

    topics = Topics(pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient())
    tasks = topics.topic("soak-bulk-tasks")
    dead_letter = topics.topic("soak-bulk-dead-letter")
    dead_sub = topics.pull_subscription(dead_letter)
    env = function_env(
        ct, klaviyo, GOOGLE_CLOUD_PROJECT="demo-connector", PUBSUB_EMULATOR_HOST=pubsub,
        FIRESTORE_EMULATOR_HOST=firestore, BULK_TASKS_TOPIC=tasks,
        BULK_COLLECTION_PREFIX=f"soak{uuid.uuid4().hex[:6]}_",
        BULK_PAGE_SIZE=str(config.page_size), BULK_JOB_POLL_SECONDS="0.05",
        BULK_BATCH_DEADLINE_SECONDS="20", BULK_LEASE_SECONDS="120", LOG_LEVEL="INFO",
    )
    deaths_log = workdir / "bulk-worker-deaths.jsonl"
    api = Served("sync_api", BULK_SOURCE, env, workdir, "bulk-api")
    worker = Served("run_page_task", BULK_SOURCE, env, workdir, "bulk-worker",
                    "--die-before-save", str(config.die_before_save),
                    "--die-before-publish", str(config.die_before_publish),
                    "--customers-batch", str(config.customers_batch),
                    "--order-events-batch", str(config.order_events_batch),
                    "--seed", str(config.seed), "--deaths-log", str(deaths_log))
    rnd = random.Random(config.seed)
    problems: list[str] = []
    jobs: dict[str, dict[str, Any]] = {}
    kills = restarts = 0
    try:
        api.start()
        worker.start()
        # A batch gets 20 s (BULK_BATCH_DEADLINE_SECONDS): a killed one is redelivered after 60.
        topics.push(tasks, f"http://127.0.0.1:{worker.port}/", dead_letter, ack_deadline=60)
        klaviyo.random_faults = RandomFaults(config.seed, rate=config.klaviyo_fault_rate,
                                             mix=dict(KLAVIYO_MIX), slow=(1.0, 4.0))
        ct.random_faults = RandomFaults(config.seed + 1, rate=config.ct_fault_rate,
                                        mix=dict(CT_MIX))
        base = f"http://127.0.0.1:{api.port}"
        started = time.time()
        ids: dict[str, str] = {}
        for kind in ("customers", "orders"):
            response = requests.post(f"{base}/sync/{kind}", timeout=30)
            if response.status_code != 202:
                problems.append(f"POST /sync/{kind} answered {response.status_code}: "
                                f"{response.text[:200]}")
                continue
            ids[kind] = response.json()["jobId"]
        say(f"bulk soak: jobs {ids}")
        limit = time.monotonic() + config.timeout
        next_kill = time.monotonic() + rnd.uniform(2, 6)
        last_report = 0.0
        while ids and time.monotonic() < limit:
            for kind, job_id in ids.items():
                response = requests.get(f"{base}/sync/jobs/{job_id}", timeout=30)
                if response.status_code == 200:
                    jobs[kind] = response.json()
            if all(jobs.get(k, {}).get("status") in ("completed", "failed", "stopped")
                   for k in ids):
                break
            now = time.monotonic()
            if kills < config.max_kills and now >= next_kill:
                worker.kill()
                kills += 1
                next_kill = now + rnd.uniform(3, 8)
            if not worker.alive():
                worker.start()
                restarts += 1
            if now - last_report > 10:
                last_report = now
                say("  " + ", ".join(f"{k}: {j.get('status')} {j.get('counts')}"
                                     for k, j in jobs.items())
                    + f"; worker kills {kills}")
            time.sleep(0.3)
        finished = time.time()
        klaviyo_faults, ct_faults = klaviyo.random_faults, ct.random_faults
        klaviyo.random_faults = ct.random_faults = None
        topics.stop_pushing()
        dead = topics.pull_all(dead_sub, timeout=1)
    finally:
        worker.stop()
        api.stop()
        topics.close()

    record = RecordReader(worker.record)
    record.poll()
    deaths = []
    if deaths_log.exists():
        deaths = [json.loads(line) for line in deaths_log.read_text().splitlines() if line]
    statuses = Counter(r["status"] for r in record.rows)
    want = expected_counts(world)
    for kind in ("customers", "orders"):
        job = jobs.get(kind)
        if job is None:
            problems.append(f"no {kind} job")
            continue
        if job.get("status") != "completed":
            problems.append(f"{kind} job ended {job.get('status')}: {job.get('reason')} "
                            f"({job.get('errorCode')})")
        if job.get("counts") != want[kind]:
            problems.append(f"{kind} counts {job.get('counts')} != expected {want[kind]}")
    if dead:
        problems.append(f"{len(dead)} page tasks dead-lettered")
    settings = settings_from(env)
    expected = expected_state(ct_client(ct), settings, catalog=False)
    for identity, attributes in list(expected.profiles.items()):  # refused, reported as failed
        if not re.match(EMAIL_RE, str(attributes.get("email", ""))):
            del expected.profiles[identity]
    actual, duplicates = klaviyo_state(klaviyo)
    comparison = compare(expected, actual)
    comparison.duplicates.extend(duplicates)
    if comparison.total:
        problems.append(f"Klaviyo differs from commercetools: {comparison.summary()}")
        problems.extend(comparison.details())
    if klaviyo.internal_errors:
        problems.append(f"the Klaviyo fake crashed {len(klaviyo.internal_errors)} times")
    off_spec = [r for r in klaviyo.requests if r.violations]  # Klaviyo's OpenAPI document refuses
    if off_spec:
        problems.append(f"{len(off_spec)} requests Klaviyo's OpenAPI document refuses, e.g. "
                        f"{off_spec[0].method} {off_spec[0].path}: {off_spec[0].violations[0]}")
    death_points = Counter(d["point"] for d in deaths)
    figures: dict[str, Any] = {
        "seed": config.seed, "customers": len(world.final["customers"]),
        "orders": len(world.final["orders"]), "jobs": jobs, "expected_counts": want,
        "task_deliveries": len(record.rows), "answers": dict(statuses),
        "worker_deaths": dict(death_points), "worker_sigkills": kills,
        "worker_restarts": restarts,
        "faults_klaviyo": dict(klaviyo_faults.counts), "klaviyo_requests": klaviyo_faults.requests,
        "faults_ct": dict(ct_faults.counts), "ct_requests": ct_faults.requests,
        "dead_letters": len(dead), "time_s": round(finished - started, 1),
        "klaviyo_state": actual.sizes(), "expected_state": expected.sizes(),
        "mismatches": {"missing": len(comparison.missing),
                       "duplicate": len(comparison.duplicates),
                       "stale": len(comparison.stale), "unexpected": len(comparison.unexpected)},
    }
    lines = [
        f"bulk soak  seed {config.seed}  page size {config.page_size}  batches of "
        f"{config.customers_batch} customers / ~{config.order_events_batch} order events",
        f"  commercetools   customers {figures['customers']}, orders {figures['orders']}",
        f"  worker          died before save {death_points.get('before-save', 0)}, before "
        f"queueing the next task {death_points.get('before-publish', 0)}; SIGKILLed {kills} "
        f"times (restarted {restarts})",
        f"  faults injected Klaviyo {klaviyo_faults.injected} of {klaviyo_faults.requests} "
        f"requests {dict(sorted(klaviyo_faults.counts.items()))}; commercetools "
        f"{ct_faults.injected} of {ct_faults.requests} {dict(ct_faults.counts)}",
        f"  task deliveries {len(record.rows)} answered {dict(statuses)} (deaths leave no "
        "answer)",
        *(f"  {kind:15} {job.get('status')} in {job.get('seq')} batches, counts "
          f"{job.get('counts')} (expected {want[kind]})" for kind, job in jobs.items()),
        f"  dead letters    {len(dead)}",
        f"  time            {seconds(finished - started)}",
        f"  Klaviyo         {actual.sizes()}",
        f"  mismatches      {comparison.summary()}",
    ]
    return Report(not problems, figures, lines, problems)
