"""CI-sized soak runs (soak/): both functions under faults, on the Pub/Sub and Firestore
emulators, compared with what commercetools' data implies. By hand, larger:
`python -m soak realtime --messages 20000` / `python -m soak bulk --messages 6000`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from soak.bulk import BulkConfig, run_bulk
from soak.realtime import RealtimeConfig, run_realtime
from tests.emulators import PUBSUB_BIN, Emulator

# CI size: ~2,000 deliveries plus ~250 from live commercetools edits (about 120 s to drain on
# the 2-core CI machine) and 1,200 bulk records (about 60 s, most of it Pub/Sub's backoff after
# the worker's deaths).
REALTIME_MESSAGES = int(os.environ.get("SOAK_REALTIME_MESSAGES", "2000"))
BULK_RECORDS = int(os.environ.get("SOAK_BULK_RECORDS", "1200"))


@pytest.fixture
def own_pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Pub/Sub emulator of the soak's own: the session's one carries earlier tests' push
    subscriptions, and the emulator's few push loops per process are then shared with them."""
    log = (tmp_path_factory.mktemp("soak-pubsub") / "pubsub.log").open("wb")
    emulator = Emulator(PUBSUB_BIN, log)
    yield emulator.host
    emulator.stop()
    log.close()


@pytest.mark.emulator
@pytest.mark.timeout(900)
def test_realtime_soak(own_pubsub_emulator: str) -> None:
    # The auth-outage window (`python -m soak realtime --auth-outage 5 10`) is not run here: on
    # the Pub/Sub emulator, messages refused twice within the window were not pushed again
    # within 10 minutes (the emulator's push loop; production Pub/Sub follows the retry policy).
    report = run_realtime(RealtimeConfig(messages=REALTIME_MESSAGES, seed=7, drain_timeout=600,
                                         live_edit_bursts=0, ct_latency=(0.0, 0.0),
                                         klaviyo_latency=(0.0, 0.0),
                                         latency_spike=(0.0, 0.0, 0.0)),
                          pubsub_host=own_pubsub_emulator, progress=lambda _: None)
    print(report.text())
    assert report.ok, report.text()
    figures = report.figures
    assert figures["dead_letters"] == 0 and figures["dlq_probe_dead_lettered"]
    assert figures["malformed_acknowledged_first_time"] == figures["malformed"]
    assert sum(figures["faults_klaviyo"].values()) > 0 and sum(figures["faults_ct"].values()) > 0
    assert figures["mismatches"] == {"missing": 0, "duplicate": 0, "stale": 0, "unexpected": 0}
    assert figures["auth_outage"]["klaviyo_401"] == 0  # (no outage window in this run)


@pytest.mark.emulator
@pytest.mark.timeout(900)
def test_realtime_soak_with_live_edits(own_pubsub_emulator: str) -> None:
    """commercetools changes while the deliveries are in flight (soak/edits.py), with latency
    on both fakes; the end check is against its final state."""
    report = run_realtime(RealtimeConfig(messages=REALTIME_MESSAGES, seed=7, drain_timeout=600),
                          pubsub_host=own_pubsub_emulator, progress=lambda _: None)
    print(report.text())
    figures = report.figures
    edits = figures["ct_edits"]
    for kind in ("customer name", "email changed before fulfilment", "product renamed",
                 "product unpublished", "product published", "category renamed",
                 "order confirmed"):
        assert edits.get(kind, 0) > 0, (kind, edits)
    assert report.ok, report.text()
    assert figures["dead_letters"] == 0
    assert figures["mismatches"] == {"missing": 0, "duplicate": 0, "stale": 0, "unexpected": 0}


@pytest.mark.emulator
@pytest.mark.timeout(900)
def test_bulk_soak(own_pubsub_emulator: str) -> None:
    customers = BULK_RECORDS * 3 // 5
    report = run_bulk(BulkConfig(customers=customers, orders=BULK_RECORDS - customers, seed=7),
                      # a Firestore of its own
                      pubsub_host=own_pubsub_emulator, firestore_host=None,
                      progress=lambda _: None)
    print(report.text())
    assert report.ok, report.text()
    figures = report.figures
    assert sum(figures["worker_deaths"].values()) + figures["worker_sigkills"] > 0
    for kind in ("customers", "orders"):
        assert figures["jobs"][kind]["status"] == "completed"
        assert figures["jobs"][kind]["counts"] == figures["expected_counts"][kind]
    assert figures["mismatches"] == {"missing": 0, "duplicate": 0, "stale": 0, "unexpected": 0}


@pytest.mark.emulator
@pytest.mark.timeout(900)
def test_bulk_soak_with_partitions(own_pubsub_emulator: str) -> None:
    """Both jobs in 4 partitions each while the worker dies between send and save and between
    save and queueing the next task: counts and Klaviyo exact (no SIGKILLs: see BulkConfig)."""
    customers = BULK_RECORDS * 3 // 10
    report = run_bulk(BulkConfig(customers=customers, orders=BULK_RECORDS // 2 - customers,
                                 seed=3, partitions=4, max_kills=0),
                      pubsub_host=own_pubsub_emulator, firestore_host=None,
                      progress=lambda _: None)
    print(report.text())
    assert report.ok, report.text()
    figures = report.figures
    assert sum(figures["worker_deaths"].values()) > 0
    for kind in ("customers", "orders"):
        job = figures["jobs"][kind]
        assert job["status"] == "completed" and job["partitions"] == 4
        assert [p["status"] for p in job["parts"]] == ["completed"] * 4
        assert job["counts"] == figures["expected_counts"][kind]
    assert figures["mismatches"] == {"missing": 0, "duplicate": 0, "stale": 0, "unexpected": 0}
