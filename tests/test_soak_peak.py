"""The realtime soak's peak phase and auth-outage window (issue 14 §7, §8), CI-sized.

Both deliver through soak/pusher.py (Pub/Sub's push retry policy over the emulator's pull
subscriptions): the emulator's own push loop stops redelivering messages refused together under a
retry policy (see soak/pusher.py), so it cannot show that nothing is lost.

By hand, larger: `python -m soak realtime --peak 10 120` (Klaviyo's limits × 0.1, 3 instances,
deploy's retry policy) and `python -m soak realtime --auth-outage 5 30 --instances 2`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from soak.limits import AccountLimits, scaled_limits
from soak.pusher import backoff
from soak.realtime import RealtimeConfig, run_realtime
from tests.emulators import PUBSUB_BIN, Emulator


@pytest.fixture
def own_pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = (tmp_path_factory.mktemp("soak-peak-pubsub") / "pubsub.log").open("wb")
    emulator = Emulator(PUBSUB_BIN, log)
    yield emulator.host
    emulator.stop()
    log.close()


# -- the pieces ---------------------------------------------------------------------------------


def test_account_limits_are_fixed_windows_shared_by_all_callers() -> None:
    now = [120.2]
    limits = AccountLimits({"profile-write": scaled_limits(0.04)["profile-write"],
                            "default": scaled_limits(0.04)["default"]}, clock=lambda: now[0])
    # Klaviyo's 75/s and 700/min × 0.04: 3 per second, 28 per minute.
    assert [limits.admit("POST", "/api/profile-import") for _ in range(4)] == [None] * 3 + [1]
    now[0] = 121.0  # the next second: the burst window is fresh
    assert limits.admit("POST", "/api/profile-import") is None
    for second in range(122, 150):  # fill the minute, 3 a second, until it refuses
        now[0] = float(second)
        for _ in range(3):
            limits.admit("POST", "/api/profile-import")
    now[0] = 150.5
    # The minute window [120, 180) is full: Retry-After is the whole seconds to its end.
    assert limits.admit("POST", "/api/profile-import") == 30
    assert limits.admitted["profile-write"] == 28
    assert limits.admit("GET", "/api/catalog-items") is None  # another family: its own windows
    now[0] = 180.0
    assert limits.admit("POST", "/api/profile-import") is None


def test_scaled_limits_keep_the_periods_and_at_least_one() -> None:
    table = scaled_limits(0.01)
    assert [(r.count, r.period) for r in table["profile-write"]] == [(1, 1.0), (7, 60.0)]
    assert [(r.count, r.period) for r in table["data-privacy"]] == [(1, 1.0), (1, 60.0)]
    with pytest.raises(ValueError):
        scaled_limits(0)


def test_pusher_backoff_is_the_retry_policy_curve() -> None:
    # deploy.sh: minimum 10 s, maximum 600 s, doubling.
    assert [backoff(n, 10, 600) for n in range(1, 9)] == [10, 20, 40, 80, 160, 320, 600, 600]


# -- the runs -----------------------------------------------------------------------------------


@pytest.mark.emulator
@pytest.mark.timeout(400)
def test_realtime_soak_peak_above_the_account_limit(own_pubsub_emulator: str) -> None:
    """Arrivals above a (scaled) Klaviyo account limit shared by three instances, each with its
    own limiter: the fake answers 429 with Retry-After across them; the backlog drains after the
    peak with deploy's 100 delivery attempts and nothing dead-lettered, Klaviyo exact."""
    report = run_realtime(RealtimeConfig(
        seed=5, peak_rate=5, peak_seconds=16, limit_scale=0.02, instances=3, concurrency=4,
        backoff=(1, 8), live_edit_bursts=0, drain_timeout=300),
        pubsub_host=own_pubsub_emulator, progress=lambda _: None)
    print(report.text())
    figures = report.figures
    assert report.ok, report.text()
    peak = figures["peak"]
    # Above the limit: the account refused requests. Whether a refusal outlasts one delivery's
    # deadline (a redelivery, lag > 5 s) depends on the machine's pace, so that is reported, not
    # pinned; what is pinned is the end state: nothing lost, nothing dead-lettered.
    assert sum(peak["klaviyo_429_account_limit"].values()) > 0, peak
    assert figures["dead_letters"] == 0
    assert figures["mismatches"] == {"missing": 0, "duplicate": 0, "stale": 0, "unexpected": 0}
    assert figures["lag_s"]["n"] == figures["messages"] + figures["edit_messages"]


@pytest.mark.emulator
@pytest.mark.timeout(400)
def test_realtime_soak_auth_outage_loses_nothing(own_pubsub_emulator: str) -> None:
    """A rotated Klaviyo key for 25 s: deliveries of the window are refused, redelivered with
    backoff, and after 5 attempts dead-lettered; once the key is back, the dead letters are
    replayed with deploy.deadletters. Every message of the window ends written, none lost."""
    report = run_realtime(RealtimeConfig(
        messages=300, seed=3, auth_outage_at=3, auth_outage_seconds=25, instances=2,
        max_delivery_attempts=5, backoff=(1, 4), live_edit_bursts=0, drain_timeout=300),
        pubsub_host=own_pubsub_emulator, progress=lambda _: None)
    print(report.text())
    assert report.ok, report.text()
    outage = report.figures["auth_outage"]
    assert outage["klaviyo_401"] > 0
    assert outage["of_those_acknowledged"] > 0  # redelivered after the key came back
    assert outage["of_those_dead_lettered"] > 0  # ... or dead-lettered
    assert outage["of_those_replayed"] == outage["of_those_dead_lettered"]  # ... and replayed
    assert outage["lost"] == 0
    assert report.figures["mismatches"] == {"missing": 0, "duplicate": 0, "stale": 0,
                                            "unexpected": 0}
