"""Klaviyo bulk requests for both functions: chunking to each endpoint's limits and isolating
the records Klaviyo rejects (the bulk exporters; realtime's batched order events).
Klaviyo validates a bulk request as a whole: one malformed record (a bad email, a repeated
unique_id) turns the whole request into a 400. `send_isolating` then takes the record(s) the
error's `source.pointer` names out and sends the rest again; without a usable pointer it splits
the request in halves until each bad record is alone. Every isolated record becomes a RecordError
(CT id, status, code, pointer; never the record's data), everything else is still sent.

Errors that say nothing about a record (429 and 5xx after the client's retries, timeouts, a
deadline) are raised: the batch fails as a whole and the job runner retries it, which is safe
because every write is idempotent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from shared.deadline import Deadline
from shared.errors import KlaviyoError
from shared.klaviyo import MAX_BULK_EVENTS, MAX_BULK_PROFILES, KlaviyoClient
from shared.log import get_logger
from shared.mapping.events import KlaviyoEvent

log = get_logger("klaviyo.batches")

T = TypeVar("T")


@dataclass(frozen=True)
class RecordError:
    """One record Klaviyo refused. No PII: the CT id and Klaviyo's error code/pointer only."""

    ct_id: str
    status: int | None = None
    code: str | None = None
    pointer: str | None = None
    # The Klaviyo bulk job that refused it after accepting it (None: the request was refused).
    # Not part of equality: the same refusal of the same record, whichever job it was in.
    klaviyo_job: str | None = field(default=None, compare=False)

# Klaviyo's bulk payload limit is 5 MB; keep room for the envelope and JSON:API wrappers.
MAX_PAYLOAD_BYTES = 4_500_000
# Statuses that reject the request because of what is in it (retrying the same body cannot help).
RECORD_REJECTION_STATUSES = frozenset({400, 413, 422})

_PROFILE_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/|$)")
_EVENT_POINTER = re.compile(
    r"^/data/attributes/events-bulk-create/data/(\d+)(?:/attributes/events/data/(\d+))?(?:/|$)"
)


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str))


def chunked(
    items: Sequence[T], *, max_count: int, max_bytes: int | None = None,
    size: Callable[[T], int] | None = None,
) -> Iterator[list[T]]:
    """Consecutive chunks of at most `max_count` items and (with `size`) `max_bytes` bytes.

    An item bigger than `max_bytes` on its own still gets a chunk: Klaviyo will reject it and
    isolation reports it, rather than it vanishing here.
    """
    if max_count < 1:
        raise ValueError("max_count must be at least 1")
    if size is None or max_bytes is None:
        for start in range(0, len(items), max_count):
            yield list(items[start:start + max_count])
        return
    chunk: list[T] = []
    total = 0
    for item in items:
        item_size = size(item) + 1  # the comma
        if chunk and (len(chunk) >= max_count or total + item_size > max_bytes):
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += item_size
    if chunk:
        yield chunk


# ---- isolation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejected(Generic[T]):
    item: T
    error: RecordError


@dataclass
class Outcome(Generic[T]):
    """What became of a list of items: sent (accepted) or rejected, and how many requests."""

    sent: list[T] = field(default_factory=list)
    rejected: list[Rejected[T]] = field(default_factory=list)
    requests: int = 0
    results: list[Any] = field(default_factory=list)  # what `send` returned, per request

    def extend(self, other: Outcome[T]) -> None:
        self.sent.extend(other.sent)
        self.rejected.extend(other.rejected)
        self.requests += other.requests
        self.results.extend(other.results)


def is_record_rejection(exc: BaseException) -> bool:
    return (isinstance(exc, KlaviyoError) and not exc.retryable
            and exc.status in RECORD_REJECTION_STATUSES)


def _pointers(exc: KlaviyoError) -> list[str]:
    return [p for p in ((e.get("source") or {}).get("pointer") for e in exc.errors)
            if isinstance(p, str) and p]


def _error_for(exc: KlaviyoError, ct_id: str, pointer: str | None) -> RecordError:
    code = exc.code
    if pointer is not None:
        for e in exc.errors:
            if (e.get("source") or {}).get("pointer") == pointer:
                code = e.get("code") or code
                break
    elif exc.errors:
        pointer = (exc.errors[0].get("source") or {}).get("pointer")
    return RecordError(ct_id=ct_id, status=exc.status, code=code, pointer=pointer)


def send_isolating(
    items: Sequence[T],
    send: Callable[[list[T]], Any],
    *,
    ct_id: Callable[[T], str],
    locate: Callable[[list[T], str], Iterable[int] | None] | None = None,
) -> Outcome[T]:
    """Send `items` with `send(part)` (one request per call); isolate the ones Klaviyo rejects.

    On a record rejection (400/413/422) the error pointers are mapped to items with
    `locate(part, pointer)` (indices into `part`, or None if the pointer names no item): those
    items are rejected and the rest is sent again. Without a usable pointer the part is split in
    halves; a single item that is still rejected is rejected. Any other error propagates.
    """
    outcome: Outcome[T] = Outcome()
    stack: list[list[T]] = [list(items)] if items else []
    while stack:
        part = stack.pop()
        outcome.requests += 1
        try:
            result = send(part)
        except KlaviyoError as exc:
            if not is_record_rejection(exc):
                raise
            bad: dict[int, str | None] = {}
            if locate is not None:
                for pointer in _pointers(exc):
                    for index in locate(part, pointer) or ():
                        if 0 <= index < len(part):
                            bad.setdefault(index, pointer)
            if bad:
                for index, where in sorted(bad.items()):
                    outcome.rejected.append(
                        Rejected(part[index], _error_for(exc, ct_id(part[index]), where)))
                rest = [item for index, item in enumerate(part) if index not in bad]
                if rest:
                    stack.append(rest)
            elif len(part) == 1:
                outcome.rejected.append(Rejected(part[0], _error_for(exc, ct_id(part[0]), None)))
            else:
                middle = len(part) // 2
                stack.append(part[middle:])
                stack.append(part[:middle])  # popped first: the items keep their order
            log.info("klaviyo bulk request rejected; isolating", status=exc.status,
                     errorCode=exc.code, size=len(part), located=len(bad))
            continue
        outcome.sent.extend(part)
        outcome.results.append(result)
    return outcome


# ---- profiles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileRecord:
    ct_id: str
    attributes: dict[str, Any]


def send_profiles(
    klaviyo: KlaviyoClient, profiles: Sequence[ProfileRecord], *, deadline: Deadline,
    list_id: str | None = None, max_count: int = MAX_BULK_PROFILES,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> Outcome[ProfileRecord]:
    """Profile bulk import jobs of ≤10,000 profiles; `results` holds the job ids."""

    def send(part: list[ProfileRecord]) -> str:
        return klaviyo.create_profile_bulk_import_job(
            [p.attributes for p in part], list_id=list_id, deadline=deadline)

    def locate(part: list[ProfileRecord], pointer: str) -> list[int] | None:
        m = _PROFILE_POINTER.match(pointer)
        return [int(m.group(1))] if m else None

    outcome: Outcome[ProfileRecord] = Outcome()
    for chunk in chunked(profiles, max_count=max_count, max_bytes=max_bytes,
                         size=lambda p: json_size(p.attributes) + 40):
        outcome.extend(send_isolating(chunk, send, ct_id=lambda p: p.ct_id, locate=locate))
    return outcome


# ---- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRecord:
    ct_id: str
    event: KlaviyoEvent


def _identity(profile: dict[str, Any]) -> tuple[Any, ...]:
    email = profile.get("email")
    return (str(email).casefold() if email else None, profile.get("phone_number"),
            profile.get("external_id"), profile.get("anonymous_id"), profile.get("_kx"))


def dedupe_events(events: Sequence[EventRecord]) -> tuple[list[EventRecord], list[EventRecord]]:
    """(kept, dropped): an event whose unique_id repeats for the same person and metric is
    dropped, because Klaviyo fails a whole bulk request for it and would record only the first
    anyway."""
    seen: set[tuple[Any, ...]] = set()
    kept: list[EventRecord] = []
    dropped: list[EventRecord] = []
    for record in events:
        ev = record.event
        key = (_identity(ev.profile), ev.metric, ev.unique_id)
        if key in seen:
            dropped.append(record)
            continue
        seen.add(key)
        kept.append(record)
    return kept, dropped


class _EventRequest:
    """One event-bulk-create request: events grouped per profile (first-appearance order), plus
    the position of each item so an error pointer `.../data/<i>/attributes/events/data/<j>` can
    be traced back to it."""

    def __init__(self, part: list[EventRecord], backfill: bool) -> None:
        groups: dict[str, int] = {}
        self.entries: list[dict[str, Any]] = []
        self.members: list[list[int]] = []  # entry index -> item indices, in event order
        for index, record in enumerate(part):
            profile = record.event.profile
            # The mapper builds a person's profile the same way every time, so its repr is a
            # cheap grouping key (two keys for one person would only mean two entries).
            key = repr(profile)
            entry = groups.get(key)
            if entry is None:
                entry = groups[key] = len(self.entries)
                self.entries.append({"profile": profile, "events": []})
                self.members.append([])
            attributes = record.event.event_attributes()
            if backfill:
                attributes["backfill"] = True
            self.entries[entry]["events"].append(attributes)
            self.members[entry].append(index)

    def locate(self, pointer: str) -> list[int] | None:
        m = _EVENT_POINTER.match(pointer)
        if not m:
            return None
        entry = int(m.group(1))
        if entry >= len(self.members):
            return None
        if m.group(2) is None:
            return list(self.members[entry])  # the profile: every event of the entry
        event = int(m.group(2))
        members = self.members[entry]
        return [members[event]] if event < len(members) else None


def send_events(
    klaviyo: KlaviyoClient, events: Sequence[EventRecord], *, deadline: Deadline,
    backfill: bool = True, max_count: int = MAX_BULK_EVENTS, max_bytes: int = MAX_PAYLOAD_BYTES,
) -> Outcome[EventRecord]:
    """Event bulk create jobs of ≤1,000 events, grouped per profile, `backfill` on every event
    (historical events must not trigger flows). Repeated unique_ids must be removed first
    (`dedupe_events`)."""
    # `send` and then (on a rejection) `locate` see the same part: build its body once.
    last: list[Any] = [None, None]

    def build(part: list[EventRecord]) -> _EventRequest:
        if last[0] is not part:
            last[0], last[1] = part, _EventRequest(part, backfill)
        return last[1]

    def send(part: list[EventRecord]) -> None:
        klaviyo.create_event_bulk_job(build(part).entries, deadline=deadline)

    def locate(part: list[EventRecord], pointer: str) -> list[int] | None:
        return build(part).locate(pointer)

    outcome: Outcome[EventRecord] = Outcome()
    for chunk in _fit_bytes(list(chunked(events, max_count=max_count)), max_bytes):
        outcome.extend(send_isolating(chunk, send, ct_id=lambda r: r.ct_id, locate=locate))
    return outcome


def _events_size(records: Sequence[EventRecord]) -> int:
    # Properties dominate; a profile is counted once per event (an upper bound when grouped).
    # One serialisation per request, not per event: the common case costs a single pass.
    return json_size([(r.event.properties, r.event.profile) for r in records]) \
        + 200 * len(records)


def _fit_bytes(chunks: list[list[EventRecord]], max_bytes: int) -> Iterator[list[EventRecord]]:
    """Halve chunks until each is within `max_bytes` (a single event stays whole)."""
    stack = list(reversed(chunks))
    while stack:
        chunk = stack.pop()
        if len(chunk) > 1 and _events_size(chunk) > max_bytes:
            middle = len(chunk) // 2
            stack.append(chunk[middle:])
            stack.append(chunk[:middle])
            continue
        yield chunk
