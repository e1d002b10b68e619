"""CommercetoolsClient over real HTTP against the fake commercetools API (tests/fakes)."""

from __future__ import annotations

import re
import socket
import time
import uuid
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

from shared.commercetools.client import CommercetoolsClient, predicate_string
from shared.config import load_settings
from shared.deadline import Deadline
from shared.errors import CommercetoolsError, ConfigError, DeadlineExceeded
from shared.retry import MAX_AUTH_ATTEMPTS
from tests.checks import known
from tests.fakes.commercetools import FakeCommercetools, parse_predicate

if TYPE_CHECKING:  # for annotations; the functions import these where they run
    from commercetools.platform.models import Customer

    from tests.test_http import RawServer

Fake = FakeCommercetools
Client = CommercetoolsClient

pytest_plugins = ["tests.fakes.commercetools"]  # no-op when tests/conftest.py loads it already

HOSTILE_ID = 'a" or id is defined or id="b'


def _ref(type_id: str, id_: str) -> dict:
    return {"typeId": type_id, "id": id_}


# ---- get by id ------------------------------------------------------------------------------

GETTERS = [
    ("get_customer", "customers", {"email": "x@example.com", "firstName": "X"}),
    ("get_order", "orders", {"orderNumber": "1001", "totalPrice": {"centAmount": 1000}}),
    ("get_payment", "payments", {"amountPlanned": {"centAmount": 1000}, "transactions": []}),
    ("get_inventory_entry", "inventory", {"sku": "SKU-1", "availableQuantity": 3}),
    ("get_cart", "carts", {"cartState": "Active", "lineItems": []}),
    ("get_category", "categories", {"name": {"en": "Shoes"}, "ancestors": []}),
    ("get_product", "products", {"masterData": {"current": {"name": {"en": "P"}},
                                                "staged": {"name": {"en": "P2"}},
                                                "published": True}}),
]


@pytest.mark.parametrize(("method", "resource", "doc"), GETTERS, ids=[g[0] for g in GETTERS])
def test_get_by_id_returns_raw_json(ct: Fake, ct_client: Client,
                                    method: str, resource: str, doc: dict) -> None:
    stored = ct.add(resource, doc)
    ct.add(resource, {**doc, "id": "other"})

    result = getattr(ct_client, method)(stored["id"])

    assert result == stored  # exactly what CT sent: camelCase dicts, no models
    assert type(result) is dict
    (request,) = ct.api_requests(resource)
    assert request.path == f"/{ct.project_key}/{resource}/{stored['id']}"


@pytest.mark.parametrize(("method", "resource", "doc"), GETTERS, ids=[g[0] for g in GETTERS])
def test_get_by_id_404_is_none(ct: Fake, ct_client: Client,
                               method: str, resource: str, doc: dict) -> None:
    ct.add(resource, doc)
    assert getattr(ct_client, method)(str(uuid.uuid4())) is None
    assert len(ct.api_requests(resource)) == 1  # a 404 is an answer, not retried


def test_get_category_expands_ancestors(ct: Fake, ct_client: Client) -> None:
    root = ct.add("categories", {"name": {"en": "Root"}, "ancestors": []})
    mid = ct.add("categories", {"name": {"en": "Men"}, "parent": _ref("category", root["id"]),
                                "ancestors": [_ref("category", root["id"])]})
    leaf = ct.add("categories", {"name": {"en": "Shoes"}, "parent": _ref("category", mid["id"]),
                                 "ancestors": [_ref("category", root["id"]),
                                               _ref("category", mid["id"])]})

    category = known(ct_client.get_category(leaf["id"]))

    assert [a["obj"]["name"]["en"] for a in category["ancestors"]] == ["Root", "Men"]
    assert [a["id"] for a in category["ancestors"]] == [root["id"], mid["id"]]
    assert ct.api_requests("categories")[0].query["expand"] == ["ancestors[*]"]


def test_product_projection_by_id_and_query(ct: FakeCommercetools,
                                            ct_client: CommercetoolsClient) -> None:
    published = ct.add("products", {"key": "p1", "masterData": {
        "published": True, "current": {"name": {"en": "Live"}},
        "staged": {"name": {"en": "Draft"}}}})
    ct.add("products", {"key": "p2",
                        "masterData": {"published": False, "current": {}, "staged": {}}})

    projection = known(ct_client.get_by_id("product-projections", published["id"]))
    page = ct_client.query_page("product-projections", after=None)

    assert projection["name"] == {"en": "Live"} and projection["key"] == "p1"
    assert "masterData" not in projection
    assert [p["id"] for p in page] == [published["id"]]


def test_products_current_data_from_projections_and_unpublished_from_products(
        ct: FakeCommercetools, ct_client: CommercetoolsClient) -> None:
    live = ct.add("products", {"key": "live", "masterData": {
        "published": True, "current": {"slug": {"en": "live"}}, "staged": {"slug": {"en": "x"}}}})
    hidden = ct.add("products", {"key": "hidden", "masterData": {
        "published": False, "current": {"slug": {"en": "hidden"}}, "staged": {}}})

    docs = ct_client.get_products_current([hidden["id"], "gone", live["id"], live["id"]])

    assert [d["id"] for d in docs] == [hidden["id"], live["id"]]  # asked order, missing left out
    assert docs[0] == hidden  # not published: the full Product
    assert docs[1]["key"] == "live"
    assert docs[1]["masterData"]["current"]["slug"] == {"en": "live"}
    assert "staged" not in docs[1]["masterData"]
    assert [r.path.rsplit("/", 1)[1] for r in ct.api_requests()] == ["product-projections",
                                                                     "products"]


def test_products_all_published_is_one_request(ct: FakeCommercetools,
                                               ct_client: CommercetoolsClient) -> None:
    ids = [ct.add("products",
                  {"masterData": {"published": True, "current": {}, "staged": {}}})["id"]
           for _ in range(3)]
    assert [d["id"] for d in ct_client.get_products_current(ids)] == ids
    assert len(ct.api_requests()) == 1


# ---- keyset paging --------------------------------------------------------------------------


def test_iter_pages_keyset(ct: Fake, ct_client: Client) -> None:
    ids = [ct.add("customers", {"key": f"c{i}"})["id"] for i in range(7)]

    pages = list(ct_client.iter_pages("customers", limit=3))

    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [c["id"] for page in pages for c in page]
    assert seen == sorted(ids)  # all, unique, in id order
    requests = ct.api_requests("customers")
    assert len(requests) == 3
    for r in requests:
        assert r.query["sort"] == ["id asc"]
        assert r.query["limit"] == ["3"]
        assert r.query["withTotal"] == ["false"]
        assert "offset" not in r.query
    assert "where" not in requests[0].query
    assert requests[1].query["where"] == [f'id > "{seen[2]}"']
    assert requests[2].query["where"] == [f'id > "{seen[5]}"']


def test_iter_pages_exact_multiple_stops_on_empty_page(ct: FakeCommercetools,
                                                      ct_client: CommercetoolsClient) -> None:
    for i in range(6):
        ct.add("customers", {"key": f"c{i}"})
    pages = list(ct_client.iter_pages("customers", limit=3))
    assert [len(p) for p in pages] == [3, 3]
    assert len(ct.api_requests("customers")) == 3


def test_iter_pages_start_after_resumes(ct: Fake, ct_client: Client) -> None:
    ids = sorted(ct.add("orders", {})["id"] for _ in range(5))
    pages = list(ct_client.iter_pages("orders", limit=500, start_after=ids[1]))
    assert [o["id"] for o in pages[0]] == ids[2:]


def test_query_page_combines_extra_where(ct: Fake, ct_client: Client) -> None:
    docs = [ct.add("customers", {"customerGroup": _ref("customer-group", g)})
            for g in ["vip", "std"] * 4]
    vip = sorted(d["id"] for d in docs if d["customerGroup"]["id"] == "vip")
    where = [f"customerGroup(id={predicate_string('vip')})"]

    first = ct_client.query_page("customers", after=None, limit=2, where=where)
    second = ct_client.query_page("customers", after=first[-1]["id"], limit=2, where=where)

    assert [c["id"] for c in first + second] == vip
    assert ct.api_requests("customers")[1].query["where"] == [f'id > "{first[-1]["id"]}"', *where]


@pytest.mark.parametrize("limit", [0, 501, -1])
def test_query_page_rejects_bad_limit(ct: Fake, ct_client: Client,
                                      limit: int) -> None:
    with pytest.raises(ValueError):
        ct_client.query_page("customers", after=None, limit=limit)
    with pytest.raises(ValueError):
        list(ct_client.iter_pages("customers", limit=limit))
    assert ct.requests == []


def test_unknown_resource_rejected(ct_client: CommercetoolsClient) -> None:
    with pytest.raises(ValueError):
        ct_client.query_page("messages", after=None)


# ---- get_by_ids / find_order_by_payment_id --------------------------------------------------


def test_get_by_ids(ct: Fake, ct_client: Client) -> None:
    ids = [ct.add("orders", {"orderNumber": str(i)})["id"] for i in range(5)]
    wanted = [ids[3], "missing", ids[0], ids[3]]

    orders = ct_client.get_by_ids("orders", wanted)

    assert [o["id"] for o in orders] == [ids[3], ids[0]]
    (request,) = ct.api_requests("orders")
    assert request.query["where"] == [f'id in ("{ids[3]}", "missing", "{ids[0]}")']
    assert request.query["limit"] == ["3"]


def test_get_by_ids_chunks_long_lists(ct: Fake, ct_client: Client) -> None:
    ids = [ct.add("customers", {})["id"] for _ in range(250)]

    customers = ct_client.get_by_ids("customers", ids)

    assert [c["id"] for c in customers] == ids
    requests = ct.api_requests("customers")
    assert len(requests) > 1
    assert all(len(r.query["where"][0]) < 4000 for r in requests)


def test_get_by_ids_empty_sends_nothing(ct: Fake, ct_client: Client) -> None:
    assert ct_client.get_by_ids("customers", []) == []
    assert ct.requests == []


def test_find_order_by_payment_id(ct: Fake, ct_client: Client) -> None:
    ct.add("orders", {"orderNumber": "1"})
    order = ct.add("orders", {"paymentInfo": {"payments": [_ref("payment", "pay-1"),
                                                           _ref("payment", "pay-2")]}})
    ct.add("orders", {"paymentInfo": {"payments": [_ref("payment", "pay-3")]}})

    assert known(ct_client.find_order_by_payment_id("pay-2"))["id"] == order["id"]
    assert ct_client.find_order_by_payment_id("pay-9") is None
    request = ct.api_requests("orders")[0]
    assert request.query["where"] == ['paymentInfo(payments(id="pay-2"))']
    assert request.query["limit"] == ["1"]


# ---- predicate escaping ---------------------------------------------------------------------


def test_predicate_string_escapes() -> None:
    assert predicate_string("abc") == '"abc"'
    assert predicate_string('a"b') == r'"a\"b"'
    assert predicate_string("a\\b") == r'"a\\b"'
    assert predicate_string('\\"') == r'"\\\""'
    with pytest.raises(TypeError):
        predicate_string(1)  # type: ignore[arg-type]  # deliberately not a string


@pytest.mark.parametrize("value", [HOSTILE_ID, 'x\\" or id="y', "tail\\", 'q"', "ünï ✓"])
def test_predicate_string_round_trips_through_the_fakes_parser(value: str) -> None:
    parsed = parse_predicate(f"id = {predicate_string(value)}")
    assert parsed == ("and", [("cmp", "id", "=", value)])


def test_hostile_id_matches_only_itself(ct: Fake, ct_client: Client) -> None:
    others = [ct.add("customers", {"id": i})["id"] for i in ("a", "b", "c", "zz")]
    ct.add("customers", {"id": HOSTILE_ID})
    ct.add("orders", {"paymentInfo": {"payments": [_ref("payment", "b")]}})
    target = ct.add("orders", {"paymentInfo": {"payments": [_ref("payment", HOSTILE_ID)]}})

    assert [c["id"] for c in ct_client.get_by_ids("customers", [HOSTILE_ID])] == [HOSTILE_ID]
    assert known(ct_client.get_customer(HOSTILE_ID))["id"] == HOSTILE_ID
    assert known(ct_client.find_order_by_payment_id(HOSTILE_ID))["id"] == target["id"]
    after = ct_client.query_page("customers", after=HOSTILE_ID)
    assert [c["id"] for c in after] == sorted(i for i in others if i > HOSTILE_ID)


def test_unsupported_predicate_is_a_terminal_400(ct: FakeCommercetools,
                                                 ct_client: CommercetoolsClient) -> None:
    with pytest.raises(CommercetoolsError) as info:
        ct_client.query_page("customers", after=None, where=['id is defined or id = "x"'])
    error = info.value
    assert (error.status, error.code, error.retryable) == (400, "InvalidInput", False)
    assert len(ct.api_requests("customers")) == 1


# ---- retries, deadline, auth ----------------------------------------------------------------


def test_503_then_success(ct: Fake, ct_client: Client) -> None:
    customer = ct.add("customers", {})
    ct.inject(503, times=1)
    assert ct_client.get_customer(customer["id"]) == customer
    assert len(ct.api_requests("customers")) == 2


def test_429_honours_retry_after(ct: Fake, ct_client: Client) -> None:
    ct.add("customers", {})
    ct.inject(429, times=1, retry_after=1)
    started = time.monotonic()
    page = ct_client.query_page("customers", after=None)
    assert len(page) == 1
    assert time.monotonic() - started >= 1.0
    assert len(ct.api_requests("customers")) == 2


def test_500_forever_hits_the_deadline(ct: FakeCommercetools) -> None:
    # Enough attempts that the deadline, not the attempt cap, ends the retries.
    client = CommercetoolsClient(project_key=ct.project_key, client_id=ct.client_id,
                                 client_secret=ct.client_secret, api_url=ct.url,
                                 auth_url=ct.auth_url, backoff_base=0.02, backoff_cap=0.1,
                                 max_attempts=1000)
    ct.inject(500, times=None)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as info:
        client.get_order("o1", deadline=Deadline.after(0.5))
    assert time.monotonic() - started < 1.0
    cause = info.value.__cause__
    assert isinstance(cause, CommercetoolsError) and cause.status == 500
    assert len(ct.api_requests("orders")) > 2


def test_503_stops_after_max_attempts(ct: Fake, ct_client: Client) -> None:
    ct.inject(503, times=None)
    with pytest.raises(CommercetoolsError):
        ct_client.get_order("o1", deadline=Deadline.after(30))
    assert len(ct.api_requests("orders")) == 8  # no retries in the HTTP adapter: not 8 x 3


def test_definite_4xx_is_not_retried(ct: Fake, ct_client: Client) -> None:
    ct.inject(400, times=None)
    with pytest.raises(CommercetoolsError) as info:
        ct_client.get_payment("p1")
    assert info.value.status == 400 and not info.value.retryable
    assert len(ct.api_requests("payments")) == 1


def test_403_is_a_short_bounded_retry_then_retryable(ct: Fake, ct_client: Client) -> None:
    # A lost scope is an outage to redeliver, not a bad record; it is certain to repeat, so a
    # few quick tries, not the whole deadline.
    ct.inject(403, times=None)
    with pytest.raises(CommercetoolsError) as info:
        ct_client.get_payment("p1", deadline=Deadline.after(30))
    assert info.value.status == 403 and info.value.retryable and info.value.auth_failure
    assert len(ct.api_requests("payments")) == MAX_AUTH_ATTEMPTS


def test_token_fetched_once_and_reused(ct: Fake, ct_client: Client) -> None:
    for _ in range(3):
        ct_client.get_cart("c1")
    assert len(ct.token_requests()) == 1


def test_expired_token_is_refreshed_transparently(ct: FakeCommercetools,
                                                  ct_client: CommercetoolsClient) -> None:
    customer = ct.add("customers", {})
    assert ct_client.get_customer(customer["id"]) == customer
    ct.expire_tokens()

    assert ct_client.get_customer(customer["id"]) == customer
    assert len(ct.token_requests()) == 2
    assert len(ct.api_requests("customers")) == 3  # ok, 401, ok


def test_token_near_expiry_is_refreshed_before_use(ct: Fake, ct_client: Client,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.commercetools import auth

    ct.token_expires_in = 600  # refresh margin: min(60 s, a tenth of the lifetime) = 60 s
    ct_client.get_cart("c1")
    clock = {"offset": 500.0}  # the client's clock jumps ahead; the fake still accepts the token
    shifted = SimpleNamespace(time=lambda: time.time() + clock["offset"])
    monkeypatch.setattr(auth, "time", shifted)
    ct_client.get_cart("c1")
    assert len(ct.token_requests()) == 1  # 100 s left: reused

    clock["offset"] = 560.0  # 40 s left: inside the margin
    ct_client.get_cart("c1")
    assert len(ct.token_requests()) == 2  # refreshed before use, not after a 401
    assert len(ct.api_requests("carts")) == 3


def test_token_endpoint_503_is_retried(ct: Fake, ct_client: Client) -> None:
    ct.inject(503, times=1, path="/oauth/token")
    assert ct_client.get_cart("c1") is None
    assert len(ct.token_requests()) == 2


def test_bad_credentials_are_a_bounded_retryable_outage(ct: FakeCommercetools) -> None:
    client = CommercetoolsClient(project_key=ct.project_key, client_id=ct.client_id,
                                 client_secret="wrong", api_url=ct.url, auth_url=ct.auth_url)
    with pytest.raises(CommercetoolsError) as info:
        client.get_customer("c1")
    error = info.value
    assert (error.status, error.code, error.retryable) == (401, "invalid_client", True)
    assert error.auth_failure and error.fix_variables.startswith("CTP_CLIENT_ID")
    assert len(ct.token_requests()) == MAX_AUTH_ATTEMPTS
    assert "wrong" not in str(info.value)
    # Also a ConfigError: one line that says which settings to fix.
    assert isinstance(error, ConfigError)
    assert "\n" not in str(error)
    assert all(name in str(error) for name in ("CTP_CLIENT_ID", "CTP_CLIENT_SECRET", "CTP_SCOPES"))


def test_scopes_of_another_project_are_refused_naming_the_settings(ct: FakeCommercetools) -> None:
    client = CommercetoolsClient(project_key=ct.project_key, client_id=ct.client_id,
                                 client_secret=ct.client_secret, api_url=ct.url,
                                 auth_url=ct.auth_url, scopes=["view_orders:other-project"])
    with pytest.raises(ConfigError, match="CTP_SCOPES") as info:
        client.get_order("o1")
    assert isinstance(info.value, CommercetoolsError)
    assert (info.value.status, info.value.code) == (400, "invalid_scope")
    assert info.value.retryable and info.value.auth_failure  # an outage: bounded retry
    assert len(ct.token_requests()) == MAX_AUTH_ATTEMPTS and ct.api_requests() == []


def test_a_burst_of_threads_at_start_up_asks_for_one_token(ct: Fake, ct_client: Client) -> None:
    import threading

    customer = ct.add("customers", {})
    barrier = threading.Barrier(8)
    results: list[object] = []

    def worker() -> None:
        barrier.wait()
        results.append(ct_client.get_customer(customer["id"]))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [customer] * 8
    assert len(ct.token_requests()) == 1 and len(ct.api_requests("customers")) == 8


def test_building_a_client_does_no_io(ct: FakeCommercetools) -> None:
    CommercetoolsClient(project_key=ct.project_key, client_id=ct.client_id,
                        client_secret=ct.client_secret, api_url=ct.url, auth_url=ct.auth_url)
    assert ct.requests == []


def test_unreachable_api_is_retried_until_the_deadline() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    client = CommercetoolsClient(project_key="p", client_id="i", client_secret="s", api_url=url,
                                 auth_url=url, backoff_base=0.02, backoff_cap=0.1,
                                 max_attempts=10_000)  # no I/O yet
    with pytest.raises(DeadlineExceeded) as info:
        client.get_customer("c1", deadline=Deadline.after(0.5))
    # Retried: more than one attempt before the deadline. The last one either failed to connect
    # or, on a loaded machine, found the deadline already too close to start.
    attempts = re.search(r"after (\d+) attempt", str(info.value))
    assert attempts is not None and int(attempts.group(1)) >= 2
    cause = info.value.__cause__
    assert isinstance(cause, (CommercetoolsError, DeadlineExceeded))
    if isinstance(cause, CommercetoolsError):
        assert cause.status is None


def test_from_settings(ct: FakeCommercetools, ct_env: dict[str, str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**ct_env, "KLAVIYO_API_KEY": "pk_test"}.items():
        monkeypatch.setenv(name, value)
    customer = ct.add("customers", {})
    client = CommercetoolsClient.from_settings(load_settings())
    assert client.get_customer(customer["id"]) == customer
    (token_request,) = ct.token_requests()
    assert token_request.path == "/oauth/token"


# ---- auth details -------------------------------------------------------------------------------


@pytest.mark.parametrize(("auth_url", "expected"), [
    ("https://auth.europe-west1.gcp.commercetools.com",
     "https://auth.europe-west1.gcp.commercetools.com/oauth/token"),
    ("https://auth.europe-west1.gcp.commercetools.com/",
     "https://auth.europe-west1.gcp.commercetools.com/oauth/token"),
    ("https://auth.example.com/oauth/token", "https://auth.example.com/oauth/token"),
])
def test_token_url(auth_url: str, expected: str) -> None:
    from shared.commercetools.auth import token_url

    assert token_url(auth_url) == expected


def test_client_secret_never_goes_over_plain_http_to_a_remote_host() -> None:
    with pytest.raises(ConfigError, match=r"invalid configuration: CTP_AUTH_URL \(must be https"):
        CommercetoolsClient(project_key="p", client_id="i", client_secret="s",
                            api_url="https://api.example.com", auth_url="http://auth.example.com")


def test_token_request_is_basic_auth_client_credentials(ct: Fake, ct_client: Client) -> None:
    ct_client.get_cart("c1")
    (token_request,) = ct.token_requests()
    assert token_request.method == "POST"
    # The fake answers 401 unless HTTP Basic carries the right id and secret, and 400 unless the
    # grant type is client_credentials with the project's scopes: one request means both held.
    assert len(ct.api_requests("carts")) == 1


def test_token_answer_without_access_token_is_retried(ct: Fake, ct_client: Client) -> None:
    # A 2xx that is not what commercetools documents is an outage: retried, not terminal.
    ct.inject(200, times=1, path="/oauth/token")
    assert ct_client.get_cart("c1") is None
    assert len(ct.token_requests()) == 2 and len(ct.api_requests("carts")) == 1
    ct_client.session._token = None
    ct.inject(200, times=None, path="/oauth/token")
    with pytest.raises(DeadlineExceeded) as info:
        ct_client.get_cart("c1", deadline=Deadline.after(0.3))
    cause = info.value.__cause__
    assert isinstance(cause, CommercetoolsError) and cause.code == "invalid_token_response"


def test_query_answer_without_results_is_retryable(ct: Fake, ct_client: Client) -> None:
    ct.inject(200, times=None, path=f"/{ct.project_key}/customers")
    with pytest.raises(CommercetoolsError) as info:
        list(ct_client.iter_pages("customers"))
    assert info.value.status == 200 and info.value.retryable


# ---- the token endpoint misbehaving (a raw socket server answers /oauth/token) ---------------


def _token_server(answer: bytes, delay: float = 0.0) -> RawServer:
    from tests.test_http import RawServer

    def behaviour(conn: socket.socket, n: int) -> bool:
        time.sleep(delay)
        conn.sendall(answer)
        return True

    return RawServer(behaviour)


def _answer(status: str, body: bytes, extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: "
            f"{len(body)}\r\n{extra}\r\n").encode() + body


def _session_client(auth_url: str, api_url: str = "http://127.0.0.1:9") -> CommercetoolsClient:
    return CommercetoolsClient(project_key="shop", client_id="cid", client_secret="sec",
                               api_url=api_url, auth_url=auth_url, max_attempts=1)


def test_a_redirecting_token_url_is_reported_not_followed() -> None:
    server = _token_server(_answer("301 Moved Permanently", b"",
                                   "Location: https://auth.example.com/oauth/token\r\n"))
    try:
        with pytest.raises(CommercetoolsError) as info:
            _session_client(server.url).get_customer("c1")
    finally:
        server.close()
    assert info.value.status == 301  # retried or not by shared.errors' classification
    assert len(server.requests) == 1


def test_a_slow_token_endpoint_is_a_retryable_timeout() -> None:
    server = _token_server(_answer("200 OK", b"{}"), delay=2.0)
    client = CommercetoolsClient(project_key="shop", client_id="cid", client_secret="sec",
                                 api_url="http://127.0.0.1:9", auth_url=server.url,
                                 read_timeout=0.3, max_attempts=1)
    started = time.monotonic()
    try:
        with pytest.raises(CommercetoolsError) as info:
            client.get_customer("c1")
    finally:
        server.close()
    assert time.monotonic() - started < 1.5
    assert (info.value.status, info.value.code, info.value.retryable) == (None, "timeout", True)


def test_a_token_granted_with_other_scopes_is_used() -> None:
    # oauthlib raises when the granted scopes differ from those asked; commercetools may grant a
    # subset, and the API's own 403s then say what is missing.
    token = _answer("200 OK", b'{"access_token":"tok-1","token_type":"Bearer","expires_in":3600,'
                              b'"scope":"view_customers:shop"}')
    api = _token_server(_answer("404 Not Found", b'{"statusCode":404,"errors":[]}'))
    auth = _token_server(token)
    client = CommercetoolsClient(project_key="shop", client_id="cid", client_secret="sec",
                                 api_url=api.url, auth_url=auth.url,
                                 scopes=["view_customers:shop", "view_orders:shop"])
    try:
        assert client.get_customer("c1") is None
    finally:
        api.close()
        auth.close()
    assert b"Authorization: Bearer tok-1\r\n" in api.requests[0]


# ---- against the SDK's own backend (commercetools.testing) ------------------------------------
# The SDK's in-process backend (requests_mock under our requests session) serves resources
# serialised by the SDK's own schemas and answers the token request its OAuth session expects;
# it ignores sort and offset, so paging stays with tests/fakes/commercetools.py.

SDK_API_URL = "https://api.europe-west1.gcp.commercetools.com"
SDK_AUTH_URL = "https://auth.europe-west1.gcp.commercetools.com"  # the only one it answers


def _sdk_customer(email: str) -> Customer:
    import datetime

    from commercetools.platform import models

    now = datetime.datetime.now(datetime.UTC)
    return models.Customer(id=str(uuid.uuid4()), version=3, created_at=now, last_modified_at=now,
                           email=email, first_name="Ada", addresses=[], stores=[],
                           is_email_verified=True,
                           authentication_mode=models.AuthenticationMode.PASSWORD)


@pytest.mark.filterwarnings("ignore")  # marshmallow 4 deprecations inside the SDK's schemas
def test_reads_through_the_sdks_testing_backend() -> None:
    import base64
    from urllib.parse import parse_qs

    from commercetools.testing import backend_mocker

    with backend_mocker() as repo:
        stored = _sdk_customer("ada@example.com")
        repo.customers.add_existing(stored)
        client = CommercetoolsClient(project_key="shop", client_id="cid", client_secret="sec",
                                     api_url=SDK_API_URL, auth_url=SDK_AUTH_URL,
                                     scopes=["view_customers:shop"])

        customer = client.get_customer(stored.id)
        found = client.get_by_ids("customers", ["missing", stored.id])
        missing = client.get_customer(str(uuid.uuid4()))
        history = repo.requests_mock.request_history

    assert customer is not None and type(customer) is dict
    assert (customer["id"], customer["version"], customer["email"], customer["firstName"]) == (
        stored.id, 3, "ada@example.com", "Ada")
    assert customer["isEmailVerified"] is True and "createdAt" in customer  # camelCase, raw
    assert found == [customer] and missing is None
    token, *api = history
    assert token.url == SDK_AUTH_URL + "/oauth/token" and token.method == "POST"
    assert token.headers["Authorization"] == "Basic " + base64.b64encode(b"cid:sec").decode()
    assert parse_qs(token.text) == {"grant_type": ["client_credentials"],
                                    "scope": ["view_customers:shop"]}
    token_value = repo.auth.model.tokens[0]["access_token"]
    assert [r.headers["Authorization"] for r in api] == [f"Bearer {token_value}"] * 3
    assert len(repo.auth.model.tokens) == 1
