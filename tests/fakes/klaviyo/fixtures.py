"""pytest fixtures: `klaviyo_server` (session), `klaviyo` (function: the fake, reset),
`klaviyo_client` (a KlaviyoClient pointed at it), and the suite-wide refusal guard.

The guard: a test that uses the fake fails if Klaviyo would have refused one of the requests it
made (the fake's own checks or Klaviyo's OpenAPI document, `spec.py`) — a request the connector
should never send. A test that sends such requests on purpose says so with
`@pytest.mark.klaviyo_refusals` (for a module: `pytestmark = pytest.mark.klaviyo_refusals`);
`@pytest.mark.klaviyo_refusals("/attributes/time", ...)` allows only refusals whose every error
points at a member ending so (a known catch, while the rest stays guarded).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.klaviyo import KlaviyoClient
from tests.fakes.klaviyo.server import FakeKlaviyo


@pytest.fixture(scope="session")
def klaviyo_server() -> Iterator[FakeKlaviyo]:
    fake = FakeKlaviyo().start()
    try:
        yield fake
    finally:
        fake.stop()


REFUSALS_MARKER = "klaviyo_refusals"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{REFUSALS_MARKER}: the test's requests to the Klaviyo fake may be refused "
                   "as invalid (it tests that); without it any refusal fails the test")


def refusals(fake: FakeKlaviyo, allowed: tuple[str, ...] = ()) -> list[str]:
    """One line per request the fake refused as invalid: method, path, status, the errors;
    without those whose every error points at a member ending with one of `allowed`."""
    lines = []
    for r in [*fake.refused_earlier, *fake.requests]:
        pointers = [(e.get("source") or {}).get("pointer") or "" for e in r.errors]
        if allowed and pointers and all(p.endswith(allowed) for p in pointers):
            continue
        if r.refused:
            reasons = "; ".join(_reason(e) for e in r.errors)
            lines.append(f"{r.method} {r.path} → {r.status}: {reasons}")
    return lines


def _reason(error: dict[str, Any]) -> str:
    source = error.get("source") or {}
    where = source.get("pointer") or source.get("parameter") or ""
    return f"{where} {error.get('detail')}".strip()


@pytest.fixture
def klaviyo(klaviyo_server: FakeKlaviyo, request: pytest.FixtureRequest
            ) -> Iterator[FakeKlaviyo]:
    klaviyo_server.reset()
    klaviyo_server.refused_earlier.clear()
    yield klaviyo_server
    internal = list(klaviyo_server.internal_errors)
    marker = request.node.get_closest_marker(REFUSALS_MARKER)
    allowed = tuple(marker.args) if marker is not None else ()
    refused = refusals(klaviyo_server, allowed) if marker is None or allowed else []
    klaviyo_server.reset()
    klaviyo_server.refused_earlier.clear()
    assert not internal, "the fake Klaviyo server crashed:\n" + "\n".join(internal)
    assert not refused, (
        "Klaviyo refuses requests this test made (mark the test "
        f"@pytest.mark.{REFUSALS_MARKER} if it sends them on purpose):\n" + "\n".join(refused))


@pytest.fixture
def klaviyo_client(klaviyo: FakeKlaviyo) -> Iterator[KlaviyoClient]:
    from shared.config import DEFAULT_KLAVIYO_REVISION

    client = KlaviyoClient(klaviyo.api_key, klaviyo.url, DEFAULT_KLAVIYO_REVISION,
                           timeout=(1.0, 2.0), retry_base=0.05, retry_cap=0.2)
    try:
        yield client
    finally:
        client.close()
