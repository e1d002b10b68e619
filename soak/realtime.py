"""The realtime soak: a shuffled stream of commercetools deliveries (with duplicates and malformed
ones) pushed by the Pub/Sub emulator to the realtime function, with faults injected in both fakes.

1. A seeded world (soak/world.py): Klaviyo is seeded with what the *initial* commercetools data
   maps to (through the connector's Klaviyo client), the commercetools fake then serves the
   *final* data.
2. The realtime function runs under functions-framework in its own process (soak/serve.py). The
   Pub/Sub emulator pushes to it through `shards` topics, each with a push subscription carrying
   deploy's retry and dead-letter policy (the emulator pushes with two loops per subscription, so
   one subscription would allow only two concurrent deliveries; Cloud Run scales out).
3. Faults, seeded: Klaviyo answers 429 with Retry-After, 500/503, slow answers near the client's
   timeout, dropped connections; commercetools answers 503. Latency on every answer of both
   fakes, with the odd long one (soak/latency.py).
   While the deliveries are in flight, commercetools changes (soak/edits.py): bursts of edits to
   the same customers, products, categories and orders, each with its own delivery, so the end
   check is against a state that moved under the function's feet.
4. When every message is acknowledged (or dead-lettered), Klaviyo's state is compared with what the
   final commercetools data implies: missing, duplicate, stale and left-over objects.

Malformed deliveries are acknowledged by design (logged, never retried: redelivering cannot fix
them), so they never reach the dead-letter topic: the run checks that each was answered 2xx at its
first delivery, and that the dead-letter topic is empty, since anything there would be a
well-formed message given up on. A probe subscription whose endpoint refuses connections shows the
dead-letter wiring works (its message must arrive in the dead-letter topic).

Two phases deliver through soak/pusher.py instead (Pub/Sub's push retry policy over the emulator's
pull subscriptions; the emulator's push loop stops redelivering messages refused together), to
`instances` function processes with `concurrency` requests each:
- the peak (`peak_rate`, `peak_seconds`): arrivals at a steady rate against a Klaviyo account at
  `limit_scale` of Klaviyo's limits (soak/limits.py), enforced by the fake across all instances,
  each instance's limiter scaled the same. Reported: lag from publishing to the acknowledged
  delivery, the account's 429s, redeliveries, dead letters (none allowed) and the drain rate.
- the auth outage (`auth_outage_at`, `auth_outage_seconds`): the key is refused for a while;
  a message of the window ends acknowledged after a redelivery, or dead-lettered and then
  replayed with `python -m deploy.deadletters replay --ids ...` once the key is back. One that
  ends neither way is lost, and a problem.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soak.common import (
    MAX_DELIVERY_ATTEMPTS,
    MIN_BACKOFF_SECONDS,
    PROJECT,
    ROOT,
    RecordReader,
    Served,
    Topics,
    ct_client,
    emulator_env,
    emulators,
    free_port,
    function_env,
    log_counts,
    seconds,
    settings_from,
)
from soak.edits import LiveEdits
from soak.expected import KlaviyoState, compare, expected_state, klaviyo_state
from soak.limits import AccountLimits, scaled_limits
from soak.pusher import Pusher
from soak.world import RESOURCES, World, build_world

REALTIME_SOURCE = str(ROOT / "realtime" / "main.py")
LOG_MESSAGES = ("malformed message acknowledged", "resource failed validation; acknowledged",
                "terminal failure; acknowledged", "retryable failure; message will be redelivered",
                "subscription test message acknowledged", "no processor for message; acknowledged",
                "credentials refused: fix KLAVIYO_API_KEY; message will be redelivered",
                "unexpected failure; message will be redelivered")


@dataclass
class RealtimeConfig:
    messages: int = 2000
    seed: int = 1
    shards: int = 4
    klaviyo_fault_rate: float = 0.04
    ct_fault_rate: float = 0.03
    deadline_seconds: float = 5.0  # REALTIME_DEADLINE_SECONDS (production: 50)
    drain_timeout: float = 600.0
    dlq_probe: bool = True
    workdir: str | None = None  # keep the function's log and delivery record here
    # A rotated Klaviyo key: from `auth_outage_at` seconds after publishing began, for
    # `auth_outage_seconds`, Klaviyo answers 401 to the function's key; then the key is restored.
    # Every message of that window must end written (redelivered), none acknowledged and lost.
    auth_outage_at: float = 0.0
    auth_outage_seconds: float = 0.0
    # Bursts of commercetools edits made while the deliveries are in flight (soak/edits.py);
    # None: one per 20 messages. Each edit publishes its own delivery.
    live_edit_bursts: int | None = None
    # Latency on every answer, seconds (uniform): commercetools after its read, Klaviyo before
    # its write (soak/latency.py), so overlapping deliveries of one resource interleave.
    ct_latency: tuple[float, float] = (0.0, 0.1)
    klaviyo_latency: tuple[float, float] = (0.0, 0.08)
    latency_spike: tuple[float, float, float] = (0.05, 0.4, 1.5)  # probability, seconds low, high
    # -- delivery transport -------------------------------------------------------------------
    # "push": the emulator's push subscriptions (deploy's policy). "pusher": soak/pusher.py,
    # Pub/Sub's documented push retry policy over the emulator's pull subscriptions, to
    # `instances` function processes with `concurrency` requests each. None: "pusher" for a peak
    # or an auth outage (the emulator's push loop loses messages refused together, see there).
    transport: str | None = None
    instances: int = 1
    concurrency: int = 4  # per instance (deploy: --concurrency=4)
    max_delivery_attempts: int = MAX_DELIVERY_ATTEMPTS  # pusher only (push: deploy's 100)
    backoff: tuple[float, float] = (MIN_BACKOFF_SECONDS, 600.0)  # pusher: retry policy, seconds
    # -- peak phase ---------------------------------------------------------------------------
    # Deliveries published at `peak_rate` per second for `peak_seconds` (instead of all at once),
    # against a Klaviyo account whose limits are Klaviyo's × `limit_scale` (the fake enforces them
    # across all instances and answers 429 with Retry-After; each instance's limiter has the same
    # scaled table). limit_scale 0: no account limits.
    peak_rate: float = 0.0
    peak_seconds: float = 0.0
    limit_scale: float = 0.0
    # Dead letters are replayed with `python -m deploy.deadletters replay --ids` once the auth
    # outage is over (None: when there is an outage window). Replayed messages count as written
    # only if the replay acknowledged them; the end check then compares Klaviyo as always.
    replay_dead_letters: bool | None = None

    @property
    def uses_pusher(self) -> bool:
        if self.transport is not None:
            return self.transport == "pusher"
        return self.peak_rate > 0 or self.auth_outage_seconds > 0

    @property
    def replays(self) -> bool:
        if self.replay_dead_letters is not None:
            return self.replay_dead_letters
        return self.auth_outage_seconds > 0


@dataclass
class Report:
    ok: bool
    figures: dict[str, Any]
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.lines + [f"PROBLEM: {p}" for p in self.problems])


def _seed_klaviyo(klaviyo: Any, state: KlaviyoState) -> None:
    """Write what the initial data maps to, through the connector's own client."""
    from shared.klaviyo import KlaviyoClient

    client = KlaviyoClient(klaviyo.api_key, klaviyo.url, "2026-07-15")
    try:
        for attributes in state.profiles.values():
            client.upsert_profile(attributes)
        for external_id, attributes in state.categories.items():
            client.create_catalog_object("category", external_id, attributes, None)
        for external_id, (attributes, relationships) in state.items.items():
            client.create_catalog_object("item", external_id, attributes, relationships)
        for external_id, (attributes, relationships) in state.variants.items():
            client.create_catalog_object("variant", external_id, attributes, relationships)
    finally:
        client.close()


def _load(ct: Any, docs: dict[str, dict[str, dict[str, Any]]]) -> None:
    for resource in RESOURCES:
        for doc in docs[resource].values():
            ct.add(resource, doc)


def _clear(ct: Any, docs: dict[str, dict[str, dict[str, Any]]]) -> None:
    for resource in RESOURCES:
        for doc_id in docs[resource]:
            ct.delete(resource, doc_id)


def run_realtime(config: RealtimeConfig, *, pubsub_host: str | None = None,
                 progress: Callable[[str], None] | None = None) -> Report:
    from soak.latency import slow_fakes
    from tests.fakes.chaos import CT_MIX, KLAVIYO_MIX, RandomFaults

    say = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    messages = config.messages
    if config.peak_rate > 0:
        messages = max(50, round(config.peak_rate * config.peak_seconds))
    world = build_world(messages, config.seed)
    klaviyo, ct = slow_fakes(config.seed)  # no latency while seeding
    klaviyo.start()
    ct.start()
    tmp = None if config.workdir else tempfile.TemporaryDirectory(prefix="soak-realtime-")
    workdir = Path(config.workdir or tmp.name)  # type: ignore[union-attr]
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        env = function_env(ct, klaviyo, REALTIME_DEADLINE_SECONDS=str(config.deadline_seconds),
                           LOG_LEVEL="INFO")
        settings = settings_from(env)
        reader = ct_client(ct)
        _load(ct, world.initial)
        initial = expected_state(reader, settings, orders=False)
        _seed_klaviyo(klaviyo, initial)
        _clear(ct, world.initial)
        _load(ct, world.final)
        say(f"realtime soak: {len(world.deliveries)} deliveries, Klaviyo seeded with "
            f"{initial.sizes()}")
        with emulators(pubsub=pubsub_host) as (pubsub, _), emulator_env(pubsub, None):
            return _run(config, world, klaviyo, ct, env, settings, reader, pubsub, workdir, say,
                        RandomFaults, KLAVIYO_MIX, CT_MIX)
    finally:
        klaviyo.stop()
        ct.stop()
        if tmp is not None:
            tmp.cleanup()


def _run(config: RealtimeConfig, world: World, klaviyo: Any, ct: Any, env: dict[str, str],
         settings: Any, reader: Any, pubsub: str, workdir: Path, say: Callable[[str], None],
         RandomFaults: Any, KLAVIYO_MIX: Any, CT_MIX: Any) -> Report:
    from google.cloud import pubsub_v1

    env = {**env, "PUBSUB_EMULATOR_HOST": pubsub}
    extra: list[str] = []
    if config.limit_scale:
        extra = ["--klaviyo-limit-scale", str(config.limit_scale)]
        klaviyo.account_limits = AccountLimits(scaled_limits(config.limit_scale))
    if config.uses_pusher:  # each instance serves `concurrency` requests at once, as Cloud Run
        env = {**env, "THREADS": str(config.concurrency)}
    servers = [Served("handle_ct_message", REALTIME_SOURCE, env, workdir,
                      "realtime" if n == 0 else f"realtime-{n}", *extra)
               for n in range(max(1, config.instances))]
    topics = Topics(pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient())
    pusher: Pusher | None = None
    problems: list[str] = []
    replayed: dict[str, float] = {}  # soak tag -> when `deploy.deadletters replay` acked it
    replay_runs: list[dict[str, Any]] = []
    try:
        for server in servers:
            server.start()
        dead_letter = topics.topic("soak-dead-letter")
        dead_sub = topics.pull_subscription(dead_letter)
        # What `deploy.deadletters replay` reads (deploy.sh: the dead-letter topic's own pull
        # subscription); dead_sub above only counts, each subscription gets every dead letter.
        replay_sub = topics.pull_subscription(dead_letter) if config.replays else None
        endpoints = [f"http://127.0.0.1:{server.port}/" for server in servers]
        shards = [topics.topic("soak-ct-messages") for _ in range(config.shards)]
        # The live edits' deliveries have topics of their own, so they are not queued behind
        # the world's backlog: a burst's deliveries overlap in the function's workers.
        edit_shards = [topics.topic("soak-ct-edits") for _ in range(max(2, config.shards // 2))]
        if config.uses_pusher:
            pusher = Pusher(topics.subscriber, endpoints, dead_letter,
                            concurrency=config.concurrency,
                            max_attempts=config.max_delivery_attempts,
                            min_backoff=config.backoff[0], max_backoff=config.backoff[1])
            for topic in shards + edit_shards:
                pusher.subscribe(topic)
            pusher.start()
        else:
            for n, topic in enumerate(shards + edit_shards):
                topics.push(topic, endpoints[n % len(endpoints)], dead_letter)
        probe_topic = None
        if config.dlq_probe:  # an endpoint that refuses connections: dead-lettered after 5
            probe_topic = topics.topic("soak-dlq-probe")
            topics.push(probe_topic, f"http://127.0.0.1:{free_port()}/", dead_letter,
                        max_attempts=5, min_backoff=1)

        deadline = config.deadline_seconds
        klaviyo.latency.seconds, ct.latency.seconds = config.klaviyo_latency, config.ct_latency
        klaviyo.latency.spike = ct.latency.spike = config.latency_spike
        klaviyo.random_faults = RandomFaults(
            config.seed, rate=config.klaviyo_fault_rate, mix=dict(KLAVIYO_MIX),
            slow=(0.6 * deadline, 1.1 * deadline))
        ct.random_faults = RandomFaults(config.seed + 1, rate=config.ct_fault_rate,
                                        mix=dict(CT_MIX))

        started = time.time()
        real_key = klaviyo.api_key
        outage = (started + config.auth_outage_at,
                  started + config.auth_outage_at + config.auth_outage_seconds)
        rotation = KeyRotation(klaviyo, outage, say, started) \
            if config.auth_outage_seconds > 0 else None
        futures = []
        publish_lock = threading.Lock()
        labels = {str(i): d.label for i, d in enumerate(world.deliveries)}
        published_at: dict[str, float] = {}

        def publish_edit(delivery: Any) -> None:
            with publish_lock:
                tag = f"e{len(labels)}"
                labels[tag] = delivery.label
                published_at[tag] = time.time()
                futures.append(topics.publisher.publish(edit_shards[len(labels) % len(edit_shards)],
                                                        delivery.data, soak=tag))

        bursts = (config.live_edit_bursts if config.live_edit_bursts is not None
                  else len(world.deliveries) // 20)
        edits = LiveEdits(world, ct, config.seed, bursts=bursts)
        edits.start(publish_edit)
        for i, delivery in enumerate(world.deliveries):
            if config.peak_rate > 0:  # the peak: arrivals at a steady rate, not all at once
                due = started + i / config.peak_rate
                if due > time.time():
                    time.sleep(due - time.time())
            with publish_lock:
                published_at[str(i)] = time.time()
                futures.append(topics.publisher.publish(shards[i % len(shards)],
                                                        delivery.data, soak=str(i)))
        peak_end = time.time()
        if probe_topic:
            futures.append(topics.publisher.publish(probe_topic, b"{}", soak="probe"))
        edits.done.wait(config.drain_timeout)
        with publish_lock:
            pending = list(futures)
        for future in pending:
            future.result(timeout=60)
        published = time.time()
        say(f"published {len(futures)} messages in {published - started:.1f} s")

        record = Records([RecordReader(server.record) for server in servers])
        acked: set[str] = set()
        dead: dict[str, int] = {}
        dead_ids: dict[str, str] = {}  # dead-letter message id -> soak tag
        last_replay = 0.0
        wanted = {str(i) for i in range(len(world.deliveries))}
        limit = time.monotonic() + config.drain_timeout
        last_report, last_dlq = 0.0, 0.0
        probe_dead = False
        while time.monotonic() < limit:
            for row in record.poll():
                if row["soak"] is not None and 200 <= row["status"] < 300:
                    acked.add(row["soak"])
            outage_state = rotation.state if rotation is not None else "none"
            now = time.monotonic()
            if now - last_dlq > 2:
                last_dlq = now
                for message in topics.pull_all(dead_sub, timeout=1):
                    tag = message.message.attributes.get("soak", "?")
                    if tag == "probe":
                        probe_dead = True
                    else:
                        dead[tag] = dead.get(tag, 0) + 1
                        dead_ids[message.message.message_id] = tag
            to_replay = sorted(m for m, t in dead_ids.items() if t not in replayed)
            if (replay_sub is not None and outage_state in ("none", "after") and to_replay
                    and now - last_replay > 5):
                # The key is fixed: the operator lists the dead letters and replays them (by id:
                # the dead-letter probe's message is no commercetools delivery, it stays).
                run = _replay(replay_sub, to_replay, env, pubsub, workdir, len(replay_runs))
                replay_runs.append(run)
                for message_id in run["acknowledged"]:
                    if message_id in dead_ids:
                        replayed.setdefault(dead_ids[message_id], time.time())
                say(f"  {time.time() - started:5.0f} s: deploy.deadletters replay: "
                    f"{len(run['acknowledged'])} acknowledged, {run['kept']} kept")
                last_replay = time.monotonic()
            wanted = set(labels) - {"probe"}
            done = acked | set(replayed) if replay_sub is not None else acked | set(dead)
            if (wanted <= done and (probe_dead or not probe_topic)
                    and outage_state in ("none", "after")):
                break
            if now - last_report > 10:
                last_report = now
                say(f"  {time.time() - started:5.0f} s: acknowledged {len(acked)}/{len(wanted)}, "
                    f"deliveries {len(record.rows)}, dead letters {len(dead)}, "
                    f"faults {klaviyo.random_faults.injected}+{ct.random_faults.injected}")
            time.sleep(0.25)
        drained_at = max((r["end"] for r in record.rows if 200 <= r["status"] < 300),
                         default=time.time())
        done = acked | set(replayed) if replay_sub is not None else acked | set(dead)
        if not wanted <= done:
            problems.append(f"not drained after {config.drain_timeout:.0f} s: "
                            f"{len(wanted - done)} messages never acknowledged"
                            + (" or replayed" if replay_sub is not None else ""))
        if edits.error is not None:
            problems.append(f"the live edits failed: {edits.error!r}")
        if probe_topic and not probe_dead:
            problems.append("the dead-letter probe never reached the dead-letter topic")
        if rotation is not None:
            rotation.stop()
        klaviyo.api_key = real_key
        klaviyo_faults, ct_faults = klaviyo.random_faults, ct.random_faults
        klaviyo.random_faults = ct.random_faults = None
        klaviyo.latency.seconds = ct.latency.seconds = (0.0, 0.0)
        klaviyo.latency.spike = ct.latency.spike = (0.0, 0.0, 0.0)
        if pusher is not None:
            pusher.stop()
        topics.stop_pushing()
        time.sleep(0.5)
        record.poll()
    finally:
        if pusher is not None:
            pusher.stop()
        for server in servers:
            server.stop()
        topics.close()

    # -- figures -------------------------------------------------------------------------------
    by_tag: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in record.rows:
        if row["soak"] is not None:
            by_tag[row["soak"]].append(row)
    kinds = {str(i): d.kind for i, d in enumerate(world.deliveries)}
    deliveries = sum(len(v) for v in by_tag.values())
    failed_answers = Counter(r["status"] for rows in by_tag.values() for r in rows
                             if not 200 <= r["status"] < 300)
    first_gaps: list[float] = []
    later_gaps: list[float] = []
    for rows in by_tag.values():
        rows.sort(key=lambda r: r["start"])
        for k in range(len(rows) - 1):
            gap = rows[k + 1]["start"] - rows[k]["end"]
            (first_gaps if k == 0 else later_gaps).append(gap)
    refused_401 = sum(1 for r in klaviyo.requests if r.status == 401)
    in_outage = {t for t, rows in by_tag.items()
                 if any(outage[0] <= r["start"] < outage[1] for r in rows)}
    # Lost: neither acknowledged by the function nor replayed (without replay, a dead letter is
    # at least kept, and reported below as a problem of its own).
    outage_lost = sorted(t for t in in_outage if t not in acked and t not in replayed
                         and (replay_sub is not None or t not in dead))
    if config.auth_outage_seconds > 0 and refused_401 == 0:
        problems.append("the auth outage window refused nothing")
    if outage_lost:
        problems.append(f"{len(outage_lost)} messages of the auth outage never acknowledged")
    malformed = [t for t, kind in kinds.items() if kind == "malformed"]
    malformed_bad = [t for t in malformed
                     if not by_tag.get(t) or len(by_tag[t]) != 1
                     or not 200 <= by_tag[t][0]["status"] < 300]
    if malformed_bad:
        problems.append(f"{len(malformed_bad)} malformed messages not acknowledged at their "
                        "first delivery")
    # With replay, a dead letter of the outage window is the documented way back (§8); anything
    # else dead-lettered (e.g. by 429s alone during a peak) is a problem, replayed or not.
    unexplained_dead = {t for t in dead if not (replay_sub is not None and t in in_outage)}
    not_replayed = {t for t in dead if replay_sub is not None and t not in replayed
                    and t not in acked}
    if not_replayed:
        problems.append(f"{len(not_replayed)} dead letters never replayed")
    if unexplained_dead:
        problems.append(f"{len(unexplained_dead)} well-formed messages dead-lettered: "
                        f"{sorted({labels.get(t, t) for t in unexplained_dead})[:10]}")

    expected = expected_state(reader, settings)
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
    logs: Counter[str] = Counter()
    for server in servers:
        logs.update(log_counts(server.log_path, LOG_MESSAGES))
    logs = Counter({k: logs[k] for k in LOG_MESSAGES})
    # Lag: from publishing to the end of the delivery that was acknowledged (the Klaviyo writes
    # happened before the function answered), or to the replay that acknowledged it.
    lags = []
    for tag, rows in by_tag.items():
        ok = [r["end"] for r in rows if 200 <= r["status"] < 300]
        if tag in published_at and ok:
            lags.append(min(ok) - published_at[tag])
    replay_lags = [replayed[t] - published_at[t] for t in replayed
                   if t in published_at and t not in acked]
    account = klaviyo.account_limits
    throttled_429 = dict(account.refused) if account is not None else {}
    sustained = _sustained(published_at, by_tag, started, peak_end)
    event_posts = len(klaviyo.requests_to("POST", "/api/events"))
    event_bulk_posts = len(klaviyo.requests_to("POST", "/api/event-bulk-create-jobs"))

    counts = world.counts()
    figures: dict[str, Any] = {
        "seed": config.seed, "messages": len(world.deliveries),
        "valid": counts["valid"], "duplicates": counts["duplicate"],
        "malformed": counts["malformed"], "shards": config.shards,
        "world": {r: len(world.final[r]) for r in RESOURCES},
        "ct_edits": dict(edits.edits), "edit_messages": len(edits.deliveries),
        "deliveries": deliveries, "redeliveries": deliveries - len(by_tag),
        "non_2xx_answers": dict(failed_answers),
        "max_deliveries_of_one_message": max((len(v) for v in by_tag.values()), default=0),
        "faults_klaviyo": dict(klaviyo_faults.counts), "klaviyo_requests": klaviyo_faults.requests,
        "faults_ct": dict(ct_faults.counts), "ct_requests": ct_faults.requests,
        "dead_letters": len(dead), "dlq_probe_dead_lettered": probe_dead,
        "malformed_acknowledged_first_time": len(malformed) - len(malformed_bad),
        "time_to_drain_s": round(drained_at - started, 1),
        "publish_s": round(published - started, 1),
        "first_redelivery_gap_s": _spread(first_gaps),
        "later_redelivery_gap_s": _spread(later_gaps),
        "klaviyo_state": actual.sizes(), "expected_state": expected.sizes(),
        "event_posts": event_posts, "event_bulk_posts": event_bulk_posts,
        "function_log": logs,
        "mismatches": {"missing": len(comparison.missing),
                       "duplicate": len(comparison.duplicates),
                       "stale": len(comparison.stale), "unexpected": len(comparison.unexpected)},
        "invalid_in_ct": dict(expected.invalid),
        "auth_outage": {"seconds": config.auth_outage_seconds, "klaviyo_401": refused_401,
                        "messages_delivered_in_window": len(in_outage),
                        "of_those_acknowledged": len(in_outage & acked),
                        "of_those_dead_lettered": len(in_outage & set(dead)),
                        "of_those_replayed": len(in_outage & set(replayed)),
                        "lost": len(outage_lost)},
        "transport": "pusher" if config.uses_pusher else "push",
        "instances": len(servers), "concurrency": config.concurrency,
        "max_delivery_attempts": (config.max_delivery_attempts if config.uses_pusher
                                  else MAX_DELIVERY_ATTEMPTS),
        "backoff_s": list(config.backoff) if config.uses_pusher else [MIN_BACKOFF_SECONDS, 600],
        "peak": {"rate": config.peak_rate, "seconds": config.peak_seconds,
                 "limit_scale": config.limit_scale,
                 "published_s": round(peak_end - started, 1),
                 "drained_after_peak_s": round(drained_at - peak_end, 1),
                 "throughput_per_s": round(len(acked) / max(0.1, drained_at - started), 2),
                 "sustained": sustained,
                 "klaviyo_429_account_limit": throttled_429,
                 "klaviyo_admitted": dict(account.admitted) if account is not None else {}},
        "lag_s": _percentiles(lags),
        "replay": {"runs": len(replay_runs), "replayed": len(replayed),
                   "lag_s": _percentiles(replay_lags),
                   "kept": [r["kept"] for r in replay_runs]},
    }
    lines = [
        f"realtime soak  seed {config.seed}  shards {config.shards}  "
        f"deadline {config.deadline_seconds:g} s",
        f"  messages        {figures['messages']} (valid {figures['valid']}, duplicates "
        f"{figures['duplicates']}, malformed {figures['malformed']}); commercetools "
        + ", ".join(f"{k} {v}" for k, v in figures["world"].items()),
        f"  live CT edits   {sum(edits.edits.values())} edits in {bursts} bursts while "
        f"delivering ({len(edits.deliveries)} more messages): "
        + ", ".join(f"{k} {v}" for k, v in sorted(edits.edits.items())),
        f"  latency         commercetools {config.ct_latency[0]:g}-{config.ct_latency[1]:g} s, "
        f"Klaviyo {config.klaviyo_latency[0]:g}-{config.klaviyo_latency[1]:g} s per answer; "
        f"{config.latency_spike[0]:.0%} of answers {config.latency_spike[1]:g}-"
        f"{config.latency_spike[2]:g} s",
        f"  faults injected Klaviyo {klaviyo_faults.injected} of {klaviyo_faults.requests} "
        f"requests {dict(sorted(klaviyo_faults.counts.items()))}; commercetools "
        f"{ct_faults.injected} of {ct_faults.requests} {dict(ct_faults.counts)}",
        f"  deliveries      {deliveries} ({figures['redeliveries']} redeliveries after "
        f"non-2xx answers {dict(failed_answers)}; at most "
        f"{figures['max_deliveries_of_one_message']} for one message)",
        f"  redelivery gap  first {_fmt(first_gaps)}; later {_fmt(later_gaps)} "
        f"(min backoff set: {MIN_BACKOFF_SECONDS} s)",
        f"  malformed       {figures['malformed_acknowledged_first_time']} of {len(malformed)} "
        "acknowledged (2xx) at their first delivery, none redelivered",
        f"  dead letters    {len(dead)}"
        + (f" (probe dead-lettered: {'yes' if probe_dead else 'NO'})" if probe_topic else ""),
        f"  time to drain   {seconds(drained_at - started)} (publishing "
        f"{seconds(published - started)})",
        f"  Klaviyo         {actual.sizes()}; {event_posts} event POSTs + "
        f"{event_bulk_posts} event-bulk-create-jobs for "
        f"{len(actual.events)} events",
        "  function log    " + ", ".join(f"{k.split(';')[0]}: {v}" for k, v in logs.items() if v),
        f"  auth outage     {config.auth_outage_seconds:g} s: {refused_401} Klaviyo 401s; "
        f"{len(in_outage)} messages delivered in the window, {len(in_outage & acked)} of them "
        f"acknowledged later, {len(in_outage & set(dead))} dead-lettered",
        f"  transport       {figures['transport']}: {len(servers)} instance(s) x "
        f"{config.concurrency if config.uses_pusher else 'gunicorn default'} concurrent, "
        f"{figures['max_delivery_attempts']} delivery attempts, backoff "
        f"{figures['backoff_s'][0]:g}-{figures['backoff_s'][1]:g} s",
        f"  lag             publish -> acknowledged (written): {_fmt_lag(lags)}",
    ]
    if config.peak_rate > 0 or config.limit_scale:
        peak = figures["peak"]
        lines.append(
            f"  peak            {config.peak_rate:g}/s for {config.peak_seconds:g} s "
            f"(published in {peak['published_s']} s); Klaviyo limits x{config.limit_scale:g} "
            f"per account; {sum(throttled_429.values())} answered 429 by the account limit "
            f"{dict(sorted(throttled_429.items()))}; drained {peak['drained_after_peak_s']} s "
            f"after the peak; {peak['throughput_per_s']} messages/s overall")
        if sustained["per_s"] is not None:
            lines.append(
                f"  sustained       drain {sustained['drain_per_s']} messages/s (best full "
                f"minute after the peak with a backlog), median {sustained['per_s']}/s; "
                f"acknowledged per minute with a backlog: {sustained['per_minute']}")
    if replay_sub is not None:
        lines.append(
            f"  dead-letter replay  {len(replay_runs)} run(s) of deploy.deadletters replay "
            f"--ids: {len(replayed)} replayed and acknowledged; lag {_fmt_lag(replay_lags)}")
    lines.append(f"  mismatches      {comparison.summary()}")
    return Report(not problems, figures, lines, problems)


class KeyRotation(threading.Thread):
    """The function's Klaviyo key refused (401) from outage[0] to outage[1] (wall clock), then
    restored: on its own timer, so the window falls where asked even while publishing."""

    def __init__(self, klaviyo: Any, outage: tuple[float, float], say: Callable[[str], None],
                 started: float) -> None:
        super().__init__(daemon=True, name="soak-key-rotation")
        self.klaviyo, self.outage, self.say, self.started = klaviyo, outage, say, started
        self.real_key = klaviyo.api_key
        self.state = "before"
        self._stop_event = threading.Event()
        self.start()

    def run(self) -> None:
        if self._stop_event.wait(max(0.0, self.outage[0] - time.time())):
            return
        self.klaviyo.api_key = "pk_rotated_meanwhile"  # the function's key is refused
        self.state = "during"
        self.say(f"  {time.time() - self.started:5.0f} s: Klaviyo key rotated (401s begin)")
        self._stop_event.wait(max(0.0, self.outage[1] - time.time()))
        self.klaviyo.api_key = self.real_key
        self.state = "after"
        self.say(f"  {time.time() - self.started:5.0f} s: Klaviyo key restored")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)
        self.klaviyo.api_key = self.real_key


class Records:
    """The delivery records of every instance, as one."""

    def __init__(self, readers: list[RecordReader]) -> None:
        self.readers = readers

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for reader in self.readers for row in reader.rows]

    def poll(self) -> list[dict[str, Any]]:
        return [row for reader in self.readers for row in reader.poll()]


def _replay(subscription: str, ids: list[str], env: dict[str, str], pubsub: str, workdir: Path,
            n: int) -> dict[str, Any]:
    """`python -m deploy.deadletters replay --ids ...` as an operator runs it, with the
    function's settings; returns the dead-letter message ids it acknowledged and how many it
    kept."""
    log = workdir / f"replay-{n}.log"
    with open(log, "wb") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "deploy.deadletters", "replay", "--ids", *ids,
             "--subscription", subscription, "--wait", "2"],
            cwd=ROOT, env={**env, "PUBSUB_EMULATOR_HOST": pubsub, "GOOGLE_CLOUD_PROJECT": PROJECT},
            stdout=out, stderr=subprocess.STDOUT, timeout=300, check=False)
    text = log.read_text(encoding="utf-8", errors="replace")
    acknowledged = [line.split()[1] for line in text.splitlines()
                    if line.startswith("acknowledged ")]
    kept = sum(1 for line in text.splitlines() if line.startswith("kept "))
    return {"returncode": proc.returncode, "acknowledged": acknowledged, "kept": kept}


def _sustained(published_at: dict[str, float], by_tag: dict[str, list[dict[str, Any]]],
               started: float, peak_end: float) -> dict[str, Any]:
    """Messages acknowledged per full minute (from the start) at whose end a backlog was still
    waiting. `drain_per_s`: the best such minute that began after the last arrival, when only
    Klaviyo's limits (and the retry policy's backoff) bound the rate: the capacity. `per_s`:
    the median of all of them (the tail of backoffs pulls it down)."""
    first_ok = {t: min(r["end"] for r in rows if 200 <= r["status"] < 300)
                for t, rows in by_tag.items() if any(200 <= r["status"] < 300 for r in rows)}
    minutes: list[int] = []
    draining: list[int] = []
    minute = 0
    last = max(first_ok.values(), default=started)
    while started + 60 * (minute + 1) <= last:
        end = started + 60 * (minute + 1)
        acked = sum(1 for t in first_ok.values() if end - 60 <= t < end)
        waiting = sum(1 for t, p in published_at.items()
                      if p < end and first_ok.get(t, float("inf")) >= end)
        if waiting > 0:
            minutes.append(acked)
            if end - 60 >= peak_end:
                draining.append(acked)
        minute += 1
    # The median minute: the last backlog minute is mostly the tail (messages waiting out
    # their backoff while Klaviyo's window is free), not what the deployment sustains.
    per_s = round(statistics.median(minutes) / 60, 2) if minutes else None
    drain = round(max(draining) / 60, 2) if draining else None
    return {"per_s": per_s, "drain_per_s": drain, "minutes": len(minutes),
            "per_minute": minutes}


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"n": len(ordered), "p50": at(0.5), "p95": at(0.95), "max": round(ordered[-1], 2)}


def _fmt_lag(values: list[float]) -> str:
    p = _percentiles(values)
    if p is None:
        return "none"
    return f"p50 {p['p50']} s, p95 {p['p95']} s, max {p['max']} s (n={p['n']})"


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"n": len(values), "min": round(min(values), 2),
            "median": round(statistics.median(values), 2), "max": round(max(values), 2)}


def _fmt(values: list[float]) -> str:
    spread = _spread(values)
    if spread is None:
        return "none"
    return f"n={spread['n']} min {spread['min']} s, median {spread['median']} s"
