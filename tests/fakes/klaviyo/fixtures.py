"""pytest fixtures: `klaviyo_server` (session), `klaviyo` (function: the fake, reset),
`klaviyo_client` (a KlaviyoClient pointed at it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.klaviyo.server import FakeKlaviyo


@pytest.fixture(scope="session")
def klaviyo_server() -> Iterator[FakeKlaviyo]:
    fake = FakeKlaviyo().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def klaviyo(klaviyo_server: FakeKlaviyo) -> Iterator[FakeKlaviyo]:
    klaviyo_server.reset()
    yield klaviyo_server
    internal = list(klaviyo_server.internal_errors)
    klaviyo_server.reset()
    assert not internal, "the fake Klaviyo server crashed:\n" + "\n".join(internal)


@pytest.fixture
def klaviyo_client(klaviyo: FakeKlaviyo) -> Iterator[Any]:
    from shared.config import DEFAULT_KLAVIYO_REVISION
    from shared.klaviyo import KlaviyoClient

    client = KlaviyoClient(klaviyo.api_key, klaviyo.url, DEFAULT_KLAVIYO_REVISION,
                           timeout=(1.0, 2.0), retry_base=0.05, retry_cap=0.2)
    try:
        yield client
    finally:
        client.close()
