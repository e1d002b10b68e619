"""Oversized inputs: a 5 MB order message, an ids list far over the limit, a product with 500
variants. Clear handling (an answer that says what is wrong, or the work done), no crash, nothing
lost."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from shared.pubsub import MAX_MESSAGE_BYTES


def eur(cents: int) -> dict[str, Any]:
    return {"type": "centPrecision", "currencyCode": "EUR", "centAmount": cents,
            "fractionDigits": 2}


def big_order(lines: int, text_bytes: int) -> dict[str, Any]:
    """An order whose JSON is about lines × text_bytes: long localized names on every line."""
    names = {f"l{i:02d}": "x" * (text_bytes // 20) for i in range(20)}
    return {
        "id": "big-order", "version": 1, "orderNumber": "BIG-1", "customerId": "cust-big",
        "customerEmail": "big@example.org", "createdAt": "2026-03-01T10:00:00.000Z",
        "orderState": "Open", "totalPrice": eur(lines * 100),
        "lineItems": [{"id": f"li-{i:04d}", "productId": f"p-{i}", "name": {"en": f"Item {i}",
                                                                           **names},
                       "variant": {"id": 1, "sku": f"SKU-{i}"}, "price": {"value": eur(100)},
                       "quantity": 1, "totalPrice": eur(100)} for i in range(lines)],
    }


def order_created(order: dict[str, Any]) -> dict[str, Any]:
    return {"notificationType": "Message", "projectKey": "test-project", "id": "m-big",
            "version": 1, "sequenceNumber": 1, "resource": {"typeId": "order", "id": order["id"]},
            "resourceVersion": 1, "type": "OrderCreated", "createdAt": "2026-03-01T10:00:01.000Z",
            "order": order}


def test_5mb_order_message_is_processed_whole(make_realtime: Callable[..., Any], ct: Any,
                                              klaviyo: Any) -> None:
    fn = make_realtime(REALTIME_DEADLINE_SECONDS="60")
    order = big_order(lines=250, text_bytes=20_000)
    ct.add("orders", order)
    delivery = json.dumps(order_created(order)).encode()
    assert 5_000_000 <= len(delivery) < MAX_MESSAGE_BYTES
    assert fn.deliver_bytes(delivery) == 200
    events = {e["unique_id"]: e for e in klaviyo.events}
    # nothing lost: the Placed Order and one Ordered Product per line
    assert set(events) == {"big-order:placed"} | {f"li-{i:04d}" for i in range(250)}
    assert len(events["big-order:placed"]["properties"]["Items"]) == 250
    # All 251 events in one bulk request, within Klaviyo's 5 MB payload limit.
    (bulk,) = klaviyo.requests_to("POST", "/api/event-bulk-create-jobs")
    assert len(json.dumps(bulk.json).encode()) < 5_000_000
    assert not klaviyo.requests_to("POST", "/api/events")
    # a redelivery of the same 5 MB message writes nothing new
    assert fn.deliver_bytes(delivery) == 200
    assert len(klaviyo.events) == 251


def test_message_over_the_pubsub_limit_is_acknowledged_as_malformed(
    make_realtime: Callable[..., Any], ct: Any, klaviyo: Any
) -> None:
    fn = make_realtime()
    order = big_order(lines=560, text_bytes=20_000)
    delivery = json.dumps(order_created(order)).encode()
    assert len(delivery) > MAX_MESSAGE_BYTES  # Pub/Sub itself refuses messages over 10 MB
    assert fn.deliver_bytes(delivery) == 200
    assert not klaviyo.requests


# ---- an ids list far over the limit ----------------------------------------------------------


@pytest.fixture
def bulk_api(ct_env: dict[str, str], klaviyo: Any, monkeypatch: pytest.MonkeyPatch,
             tmp_path: Any) -> Any:
    from functions_framework import create_app

    from shared.config import get_settings
    from tests.test_bulk_e2e import BULK_SOURCE, fresh_rate_limiter

    for name in ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
                 "K_SERVICE", "BULK_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**ct_env, "KLAVIYO_API_KEY": klaviyo.api_key,
                        "KLAVIYO_BASE_URL": klaviyo.url,
                        "BULK_LOCAL_STATE_FILE": str(tmp_path / "state.json")}.items():
        monkeypatch.setenv(name, value)
    fresh_rate_limiter(monkeypatch)
    get_settings.cache_clear()
    yield create_app("sync_api", BULK_SOURCE).test_client()
    get_settings.cache_clear()


def test_ids_far_over_the_count_limit(bulk_api: Any) -> None:
    response = bulk_api.post("/sync/customers", json={"ids": [f"c{i}" for i in range(60_000)]})
    assert response.status_code == 400
    assert response.get_json() == {"error": "bad_request", "message":
                                   "ids has 60000 items; at most 10000 per request"}


def test_ids_far_over_the_body_limit(bulk_api: Any) -> None:
    ids = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(100_000)]  # 3.9 MB
    response = bulk_api.post("/sync/orders", json={"ids": ids})
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert "larger than 2097152 bytes" in response.get_json()["message"]


def wait_done(client: Any, job_id: str, timeout: float = 30) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while (view := client.get(f"/sync/jobs/{job_id}").get_json())["status"] not in (
            "completed", "failed", "stopped"):
        assert time.monotonic() < deadline, view
        time.sleep(0.05)
    return view


def test_exactly_the_limit_of_ids_syncs_every_existing_one(bulk_api: Any, ct: Any,
                                                            klaviyo: Any) -> None:
    real = [f"{i:08d}-1111-4000-8000-000000000000" for i in range(0, 10_000, 250)]  # 40
    for cid in real:
        ct.add("customers", {"id": cid, "email": f"{cid[:8]}@example.org", "addresses": []})
    ids = [f"{i:08d}-1111-4000-8000-000000000000" for i in range(10_000)]
    response = bulk_api.post("/sync/customers", json={"ids": ids})
    assert response.status_code == 202, response.get_json()
    view = wait_done(bulk_api, response.get_json()["jobId"])
    assert view["status"] == "completed" and view["idCount"] == 10_000
    assert view["counts"]["read"] == view["counts"]["sent"] == 40  # the rest do not exist
    assert sorted(p["attributes"]["external_id"] for p in klaviyo.profiles.values()) == real


@pytest.mark.emulator
def test_ids_that_do_not_fit_a_firestore_document_are_refused(
    ct_env: dict[str, str], klaviyo: Any, firestore_db: Any, pubsub_topic: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10,000 ids of 64 three-byte characters are within the count and body limits, but not
    within Firestore's 1 MiB document (the job's ids are one document): a clear 400, not a 500."""
    from functions_framework import create_app

    from shared.config import get_settings
    from tests.emulators import PROJECT
    from tests.test_bulk_e2e import BULK_SOURCE

    for name, value in {**ct_env, "KLAVIYO_API_KEY": klaviyo.api_key,
                        "KLAVIYO_BASE_URL": klaviyo.url, "GOOGLE_CLOUD_PROJECT": PROJECT,
                        "BULK_TASKS_TOPIC": pubsub_topic,
                        "BULK_COLLECTION_PREFIX": "oversized_"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        client = create_app("sync_api", BULK_SOURCE).test_client()
        ids = [f"{i:05d}" + "€" * 59 for i in range(10_000)]
        body = json.dumps({"ids": ids}, ensure_ascii=False).encode()  # 1.8 MB of UTF-8
        response = client.post("/sync/customers", data=body, content_type="application/json")
        assert response.status_code == 400, response.get_json()
        assert "bytes" in response.get_json()["message"]
        assert client.get("/sync/customers").status_code == 404  # no job was created
        ascii_ids = [f"{i:05d}" + "a" * 59 for i in range(10_000)]  # 640 KB: fits
        response = client.post("/sync/customers", json={"ids": ascii_ids})
        assert response.status_code == 202, response.get_json()
    finally:
        get_settings.cache_clear()


# ---- a product with 500 variants -------------------------------------------------------------


def product_doc(skus: list[str], cents: int = 1000) -> dict[str, Any]:
    variants = [{"id": i + 1, "sku": sku, "prices": [{"value": eur(cents + i)}],
                 "availability": {"availableQuantity": i % 7}} for i, sku in enumerate(skus)]
    data = {"name": {"en": "Many"}, "slug": {"en": "many"}, "categories": [],
            "masterVariant": variants[0], "variants": variants[1:]}
    return {"id": "p-500", "version": 1, "key": "many",
            "masterData": {"published": True, "current": data, "staged": copy.deepcopy(data),
                           "hasStagedChanges": False}}


def test_product_with_500_variants_realtime(make_realtime: Callable[..., Any], ct: Any,
                                            klaviyo: Any) -> None:
    fn = make_realtime(REALTIME_DEADLINE_SECONDS="60", PREFERRED_LOCALE="en")
    skus = [f"MANY-{i:03d}" for i in range(500)]
    ct.add("products", product_doc(skus))
    published = {"notificationType": "Message", "id": "m-p", "version": 1, "type":
                 "ProductPublished", "resource": {"typeId": "product", "id": "p-500"}}
    assert fn.deliver(published) == 200
    assert len(klaviyo.items) == 1 and len(klaviyo.variants) == 500
    # 5 variants removed, every price changed: the update pages through Klaviyo's 5 pages of
    # variants, rewrites 495 and deletes 5. (Delivered to a fresh instance: within the same
    # minute one instance's rate limiter would first wait for Klaviyo's 700 writes/min window.)
    ct.add("products", {**product_doc(skus[:495], cents=2000), "version": 2})
    fn = make_realtime(REALTIME_DEADLINE_SECONDS="60", PREFERRED_LOCALE="en")
    assert fn.deliver({**published, "id": "m-p2"}) == 200
    prices = {k.split(":::")[-1]: v["attributes"]["price"] for k, v in klaviyo.variants.items()}
    assert sorted(prices) == skus[:495]
    assert prices["MANY-000"] == 20.0 and prices["MANY-494"] == 24.94


def test_product_with_500_variants_bulk(ct_client: Any, klaviyo_client: Any, ct: Any,
                                        klaviyo: Any) -> None:
    from shared.bulk.exporters.products import ProductsExporter
    from shared.deadline import Deadline
    from shared.klaviyo.catalog_jobs import PollPolicy
    from shared.mapping.catalog import CatalogConfig

    klaviyo.job_status_sequence = []
    skus = [f"MANY-{i:03d}" for i in range(500)]
    ct.add("products", product_doc(skus))
    exporter = ProductsExporter(ct_client, klaviyo_client, config=CatalogConfig(locale="en"),
                                page_size=20, batch_size=20, poll=PollPolicy(first=0.01, cap=0.05))
    result = exporter.run_batch(after=None, ids=None, deadline=Deadline.after(60))
    assert (result.read, result.sent, result.failed, result.done) == (1, 1, 0, True)
    assert len(klaviyo.items) == 1 and len(klaviyo.variants) == 500
    jobs = klaviyo.requests_to("POST", "/api/catalog-variant-bulk-create-jobs")
    assert len(jobs) == 5  # ≤ 100 variants a job
