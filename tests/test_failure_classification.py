"""The failure classification and the backoff curve, pinned as tables, and what `dispatch()` and
the realtime function make of each class (issue 14 §1).

Terminal is a whitelist (`TERMINAL_STATUSES`): only a definite statement about the record is
acknowledged. Everything else is retried within the deadline and then redelivered by Pub/Sub.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from pydantic import create_model

from shared.commercetools.messages import CtMessage
from shared.config import load_settings
from shared.deadline import Deadline
from shared.errors import (
    AUTH_STATUSES,
    TERMINAL_STATUSES,
    ApiError,
    CommercetoolsError,
    ConnectorError,
    DeadlineExceeded,
    KlaviyoError,
    MessageError,
    RetryableError,
    auth_failure_of,
    is_terminal,
)
from shared.processors.base import Context, Processor, Trigger
from shared.processors.dispatch import Outcome, RedeliveryRequested, dispatch
from shared.retry import MAX_AUTH_ATTEMPTS, backoff_delay, call_with_retry
from tests.test_realtime_customers import CUSTOMER, customer_created, profile_imports

# status, explicit `retryable`, error code → retryable?  (None status: no answer at all)
CLASSIFICATION = [
    (None, None, None, True),            # transport error / timeout
    (None, False, "invalid_request", False),  # a URL we cannot send: explicit
    (200, None, "invalid_token_response", True),  # 2xx not as documented
    (201, None, None, True),
    (204, None, None, True),
    (400, None, None, False),
    (400, None, "invalid_scope", True),  # commercetools token endpoint: the scope is refused
    (400, None, "invalid_client", True),
    (400, None, "unauthorized_client", True),
    (400, None, "invalid_grant", True),  # a refused grant is a settings outage, never a record
    (400, None, "access_denied", True),
    (401, None, "not_authenticated", True),
    (401, None, "invalid_client", True),
    (402, None, None, True),
    (403, None, "permission_denied", True),
    (403, None, None, True),
    (404, None, None, False),
    (405, None, None, True),
    (408, None, None, True),
    (409, None, "duplicate_profile", False),
    (410, None, None, True),
    (413, None, None, False),
    (415, None, None, False),
    (422, None, None, False),
    (425, None, None, True),
    (429, None, "throttled", True),
    (500, None, None, True),
    (502, None, None, True),
    (503, None, None, True),
    (504, None, None, True),
    (400, True, None, True),  # explicit wins both ways
    (500, False, None, False),
]


@pytest.mark.parametrize("cls", [KlaviyoError, CommercetoolsError])
@pytest.mark.parametrize("status, explicit, code, retryable", CLASSIFICATION)
def test_classification_table(
    cls: type[ApiError], status: int | None, explicit: bool | None, code: str | None,
    retryable: bool,
) -> None:
    error = cls("x", status=status, code=code, retryable=explicit)
    assert error.retryable is retryable
    auth = status in (401, 403) or code in ("invalid_client", "invalid_scope",
                                            "unauthorized_client", "invalid_grant",
                                            "access_denied")
    assert error.auth_failure is auth
    assert (auth_failure_of(error) is error) is auth


def test_terminal_whitelist_is_exactly_the_documented_statuses() -> None:
    assert TERMINAL_STATUSES == {400, 404, 409, 413, 415, 422}
    assert AUTH_STATUSES == {401, 403}
    assert [s for s in range(100, 600) if is_terminal(s)] == [400, 404, 409, 413, 415, 422]
    assert not is_terminal(None) and not is_terminal(400, "invalid_scope")
    assert is_terminal(400, "invalid") and is_terminal(404, None)


def test_each_api_names_the_settings_to_fix() -> None:
    assert KlaviyoError("x", status=401).fix_variables == "KLAVIYO_API_KEY"
    assert (CommercetoolsError("x", status=403).fix_variables
            == "CTP_CLIENT_ID/CTP_CLIENT_SECRET/CTP_SCOPES")
    assert ApiError("x", status=401).fix_variables == ""


def test_auth_failure_is_found_behind_a_deadline() -> None:
    cause = KlaviyoError("x", status=401)
    try:
        try:
            raise cause
        except KlaviyoError as exc:
            raise DeadlineExceeded("out of time") from exc
    except DeadlineExceeded as outer:
        assert auth_failure_of(outer) is cause
    assert auth_failure_of(DeadlineExceeded("x")) is None
    assert auth_failure_of(None) is None
    assert auth_failure_of(KlaviyoError("x", status=500)) is None
    # Each hop of a chain is looked at, not only the first and the last.
    middle = DeadlineExceeded("b")
    middle.__cause__ = cause
    top = DeadlineExceeded("a")
    top.__cause__ = middle
    assert auth_failure_of(top) is cause


def test_log_fields_carry_status_code_and_pointers_only() -> None:
    error = KlaviyoError("x", status=400, code="invalid", errors=[
        {"code": "invalid", "detail": "jane@example.org is bad",
         "source": {"pointer": "/data/attributes/email"}},
        {"code": "invalid", "source": {"parameter": "filter"}},
        {"code": "invalid"},
    ])
    assert error.log_fields() == {"status": 400, "errorCode": "invalid",
                                  "errorPointers": ["/data/attributes/email", "filter"]}
    assert ApiError("x", status=None).errors == []


# ---- the backoff curve -------------------------------------------------------------------------

def top(low: float, high: float) -> float:
    return high


def bottom(low: float, high: float) -> float:
    return low


@pytest.mark.parametrize("attempt, retry_after, high, low", [
    (1, None, 0.25, 0.0),
    (2, None, 0.5, 0.0),
    (3, None, 1.0, 0.0),
    (4, None, 2.0, 0.0),
    (5, None, 4.0, 0.0),
    (6, None, 8.0, 0.0),   # the cap
    (7, None, 8.0, 0.0),
    (20, None, 8.0, 0.0),
    (1, 3.0, 3.25, 3.0),   # Retry-After is a floor, jitter on top
    (6, 30.0, 38.0, 30.0),
    (1, 0.0, 0.25, 0.0),
])
def test_backoff_curve(attempt: int, retry_after: float | None, high: float, low: float) -> None:
    assert backoff_delay(attempt, base=0.25, cap=8.0, retry_after=retry_after,
                         uniform=top) == pytest.approx(high)
    assert backoff_delay(attempt, base=0.25, cap=8.0, retry_after=retry_after,
                         uniform=bottom) == pytest.approx(low)


def test_backoff_jitter_is_drawn_from_zero_to_the_step() -> None:
    seen: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        seen.append((low, high))
        return 0.1

    assert backoff_delay(3, base=0.5, cap=1.5, retry_after=2.0, uniform=record) == 2.1
    assert seen == [(0, 1.5)]
    for _ in range(50):
        assert 0.0 <= backoff_delay(2, base=1.0, cap=10.0, retry_after=None) <= 2.0


class FixedDeadline(Deadline):
    """A deadline with a fixed amount of time left, so the boundary is exact."""

    left: float  # set in __init__ (Deadline is frozen)

    def __init__(self, left: float) -> None:
        object.__setattr__(self, "at", 0.0)
        object.__setattr__(self, "left", left)

    def remaining(self) -> float:
        return self.left


class Failing:
    """A call that raises `errors` in turn, then returns `result`; `calls` has one entry per
    attempt."""

    def __init__(self, errors: list[ConnectorError], result: str) -> None:
        self.errors, self.result = errors, result
        self.calls: list[int] = []

    def __call__(self) -> str:
        self.calls.append(1)
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def failing(errors: list[ConnectorError], result: str = "ok") -> Failing:
    return Failing(errors, result)


def test_retry_sleeps_the_curve_then_succeeds() -> None:
    sleeps: list[float] = []
    retries: list[tuple[int, float]] = []
    fn = failing([KlaviyoError("x", status=503), KlaviyoError("x", status=429, retry_after=2.0),
                  KlaviyoError("x", status=None)])
    assert call_with_retry(fn, deadline=FixedDeadline(100), sleep=sleeps.append, uniform=top,
                           on_retry=lambda n, e, d: retries.append((n, d))) == "ok"
    assert sleeps == [0.25, 2.5, 1.0]
    assert retries == [(1, 0.25), (2, 2.5), (3, 1.0)]
    assert len(fn.calls) == 4


def test_retry_stops_at_max_attempts_with_the_last_error() -> None:
    sleeps: list[float] = []
    errors: list[ConnectorError] = [KlaviyoError(str(i), status=500) for i in range(5)]
    last = errors[2]
    fn = failing(errors)
    with pytest.raises(KlaviyoError) as info:
        call_with_retry(fn, deadline=FixedDeadline(100), max_attempts=3, sleep=sleeps.append,
                        uniform=top)
    assert info.value is last and len(fn.calls) == 3 and sleeps == [0.25, 0.5]


def test_terminal_error_is_raised_at_once() -> None:
    sleeps: list[float] = []
    fn = failing([KlaviyoError("x", status=422)])
    with pytest.raises(KlaviyoError):
        call_with_retry(fn, deadline=FixedDeadline(100), sleep=sleeps.append)
    assert len(fn.calls) == 1 and sleeps == []


def test_non_connector_exception_is_not_retried() -> None:
    calls: list[int] = []

    def fn() -> None:
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        call_with_retry(fn, deadline=FixedDeadline(100), sleep=lambda s: None)
    assert calls == [1]


@pytest.mark.parametrize("status, code", [(401, "not_authenticated"), (403, None),
                                          (400, "invalid_scope")])
def test_refused_credentials_get_a_short_bounded_retry(status: int, code: str | None) -> None:
    sleeps: list[float] = []
    errors: list[ConnectorError] = [KlaviyoError("x", status=status, code=code)
                                    for _ in range(10)]
    fn = failing(errors)
    with pytest.raises(KlaviyoError) as info:
        call_with_retry(fn, deadline=FixedDeadline(1000), sleep=sleeps.append, uniform=top)
    assert info.value.status == status and info.value.retryable
    assert MAX_AUTH_ATTEMPTS == 3
    assert len(fn.calls) == MAX_AUTH_ATTEMPTS and sleeps == [0.25, 0.5]
    # max_attempts still bounds it when it is the smaller of the two
    fn = failing([KlaviyoError("x", status=401) for _ in range(10)])
    with pytest.raises(KlaviyoError):
        call_with_retry(fn, deadline=FixedDeadline(1000), max_attempts=2, sleep=lambda s: None)
    assert len(fn.calls) == 2
    fn = failing([KlaviyoError("x", status=401) for _ in range(10)])
    with pytest.raises(KlaviyoError):
        call_with_retry(fn, deadline=FixedDeadline(1000), max_auth_attempts=5,
                        sleep=lambda s: None)
    assert len(fn.calls) == 5


@pytest.mark.parametrize("left, raised", [(0.25, True), (0.2500001, False), (0.1, True)])
def test_deadline_boundary(left: float, raised: bool) -> None:
    # A wait that would reach the deadline is not started: DeadlineExceeded, chained to the cause.
    cause = KlaviyoError("x", status=503)
    fn = failing([cause])
    sleeps: list[float] = []
    if raised:
        with pytest.raises(DeadlineExceeded) as info:
            call_with_retry(fn, deadline=FixedDeadline(left), sleep=sleeps.append, uniform=top)
        assert info.value.__cause__ is cause and info.value.retryable
        assert sleeps == [] and len(fn.calls) == 1
    else:
        assert call_with_retry(fn, deadline=FixedDeadline(left), sleep=sleeps.append,
                               uniform=top) == "ok"
        assert sleeps == [0.25]


def test_retry_after_beyond_the_deadline_fails_fast() -> None:
    fn = failing([KlaviyoError("x", status=429, retry_after=30.0)])
    with pytest.raises(DeadlineExceeded):
        call_with_retry(fn, deadline=FixedDeadline(10), sleep=lambda s: None, uniform=bottom)


# ---- dispatch(): what each class becomes ------------------------------------------------------

def delivery(message_id: str = "msg-1") -> dict[str, Any]:
    return {**customer_created(), "id": message_id}


def cloud_event_data(payload: dict[str, Any]) -> dict[str, Any]:
    import base64

    return {"message": {"data": base64.b64encode(json.dumps(payload).encode()).decode(),
                        "messageId": "pubsub-1"}}


def processor(name: str, result: Any) -> Processor:
    def handle(message: CtMessage, ctx: Context) -> int:
        if isinstance(result, BaseException):
            raise result
        return int(result)

    return Processor(name, Trigger("customer", messages=frozenset({"CustomerCreated"})), handle)


@pytest.fixture
def context(ct_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Context:
    for name, value in {**ct_env, "KLAVIYO_API_KEY": "pk_test"}.items():
        monkeypatch.setenv(name, value)
    # No clients: these processors never call one (None fails loudly if one did).
    return Context(load_settings(), None, None, Deadline.after(5))  # type: ignore[arg-type]


def error_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("error, outcome", [
    (KlaviyoError("x", status=400), "failed"),
    (KlaviyoError("x", status=404), "failed"),
    (KlaviyoError("x", status=409), "failed"),
    (KlaviyoError("x", status=413), "failed"),
    (KlaviyoError("x", status=415), "failed"),
    (KlaviyoError("x", status=422), "failed"),
    (MessageError("x"), "failed"),
    (KlaviyoError("x", status=401), "redeliver"),
    (CommercetoolsError("x", status=403), "redeliver"),
    (KlaviyoError("x", status=408), "redeliver"),
    (KlaviyoError("x", status=425), "redeliver"),
    (KlaviyoError("x", status=429), "redeliver"),
    (CommercetoolsError("x", status=200, code="invalid_token_response"), "redeliver"),
    (KlaviyoError("x", status=500), "redeliver"),
    (DeadlineExceeded("x"), "redeliver"),
    (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), "redeliver"),
    (KeyError("bug"), "redeliver"),
])
def test_dispatch_outcome_per_class(
    context: Context, caplog: pytest.LogCaptureFixture, error: BaseException, outcome: str,
) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    processors = [processor("First", error), processor("Second", 2)]
    data = cloud_event_data(delivery())
    if outcome == "redeliver":
        with pytest.raises(RedeliveryRequested) as info:
            dispatch(data, processors, context)
        assert info.value.retryable
        assert info.value.outcome == Outcome("redeliver", 2, ("First", "Second"), ("First",))
    else:
        assert dispatch(data, processors, context) == Outcome("failed", 2, ("First", "Second"))
    # the other processor ran and was logged as processed
    processed = [r for r in caplog.records if r.getMessage() == "processed"]
    # a log line's extra fields are attributes of its record: vars() reads them
    assert [(vars(r)["processor"], vars(r)["klaviyoWrites"]) for r in processed] == [("Second", 2)]
    (line,) = [r for r in caplog.records if getattr(r, "processor", None) == "First"]
    assert vars(line)["error"] == type(error).__name__
    assert vars(line)["ctMessageId"] == "msg-1"
    if outcome == "failed" or isinstance(error, (KeyError, UnicodeEncodeError)):
        assert line.levelno == logging.ERROR
    assert "\ud800" not in line.getMessage()


def test_dispatch_all_processed(context: Context) -> None:
    processors = [processor("First", 1), processor("Second", 2)]
    assert dispatch(cloud_event_data(delivery()), processors, context) == Outcome(
        "processed", 3, ("First", "Second"))


def test_dispatch_ignored_and_malformed(context: Context) -> None:
    assert dispatch(cloud_event_data(delivery()), [], context) == Outcome("ignored")
    assert dispatch({"message": {"data": "bm90IGpzb24="}}, [], context) == Outcome("malformed")


def test_refused_credentials_log_one_error_line_per_delivery_naming_the_setting(
    context: Context, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    processors = [processor("First", KlaviyoError("x", status=401, code="not_authenticated")),
                  processor("Second", DeadlineExceeded("late")),
                  processor("Third", KlaviyoError("x", status=403))]
    processors[1] = processor("Second", _chained(KlaviyoError("x", status=401)))
    with pytest.raises(RedeliveryRequested) as info:
        dispatch(cloud_event_data(delivery()), processors, context)
    assert info.value.outcome is not None
    assert info.value.outcome.redeliver == ("First", "Second", "Third")
    (line,) = error_lines(caplog)
    assert "KLAVIYO_API_KEY" in line.getMessage()
    assert vars(line)["fixVariables"] == "KLAVIYO_API_KEY" and vars(line)["status"] == 401
    # a second API refusing its credentials is named too (another setting to fix)
    caplog.clear()
    processors = [processor("First", KlaviyoError("x", status=401)),
                  processor("Second", CommercetoolsError("x", status=401, code="invalid_client"))]
    with pytest.raises(RedeliveryRequested):
        dispatch(cloud_event_data(delivery()), processors, context)
    assert [vars(r)["fixVariables"] for r in error_lines(caplog)] == [
        "KLAVIYO_API_KEY", "CTP_CLIENT_ID/CTP_CLIENT_SECRET/CTP_SCOPES"]


def _chained(cause: Exception) -> DeadlineExceeded:
    try:
        raise DeadlineExceeded("late") from cause
    except DeadlineExceeded as exc:
        return exc


# ---- through the real entry point ------------------------------------------------------------

@pytest.mark.klaviyo_refusals  # a wrong key, on purpose
def test_wrong_klaviyo_key_is_redelivered_with_one_error_line(
    make_realtime: Any, ct: Any, klaviyo: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    ct.add("customers", dict(CUSTOMER))
    realtime = make_realtime(KLAVIYO_API_KEY="pk_rotated")
    assert realtime.deliver(customer_created()) == 500  # not acknowledged: Pub/Sub redelivers
    assert len(profile_imports(klaviyo)) == MAX_AUTH_ATTEMPTS  # short, bounded
    errors = [r for r in error_lines(caplog) if r.name.startswith("connector")]
    assert len(errors) == 1 and "KLAVIYO_API_KEY" in errors[0].getMessage()
    # the key fixed, the redelivery writes the profile
    good = make_realtime()
    assert good.deliver(customer_created()) == 200
    assert len(profile_imports(klaviyo)) == MAX_AUTH_ATTEMPTS + 1


@pytest.mark.parametrize("status", [401, 403, 408, 425, 500])
def test_outage_statuses_are_not_acknowledged(
    realtime: Any, ct: Any, klaviyo: Any, status: int,
) -> None:
    ct.add("customers", dict(CUSTOMER))
    klaviyo.inject(status, times=100, path="/api/profile-import")
    assert realtime.deliver(customer_created()) == 500
    assert len(profile_imports(klaviyo)) >= 2  # retried within the delivery


@pytest.mark.parametrize("status", [400, 409, 413, 422])
def test_definite_statements_about_the_record_are_acknowledged(
    realtime: Any, ct: Any, klaviyo: Any, status: int,
) -> None:
    ct.add("customers", dict(CUSTOMER))
    klaviyo.inject(status, times=100, path="/api/profile-import")
    assert realtime.deliver(customer_created()) == 200
    assert len(profile_imports(klaviyo)) == 1


def test_commercetools_scope_lost_is_redelivered(
    realtime: Any, ct: Any, klaviyo: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    ct.add("customers", dict(CUSTOMER))
    ct.inject(403, times=None)
    assert realtime.deliver(resource_updated_customer()) == 500
    errors = [r for r in error_lines(caplog) if r.name.startswith("connector")]
    assert len(errors) == 1
    assert "CTP_CLIENT_ID/CTP_CLIENT_SECRET/CTP_SCOPES" in errors[0].getMessage()
    assert klaviyo.requests == []


def resource_updated_customer() -> dict[str, Any]:
    from tests.test_realtime_customers import resource_updated

    return resource_updated()


# ---- the log line of each outcome, pinned ----------------------------------------------------

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
FIELDS = {"ctMessageId": "msg-1", "resource": "customer", "resourceId": "cust-1",
          "messageType": "CustomerCreated"}


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r.levelname, r.getMessage(),
             {k: v for k, v in vars(r).items() if k not in _STANDARD})
            for r in caplog.records if r.name == "connector.shared.processors.dispatch"]


def invalid_customer(message: CtMessage, ctx: Context) -> int:
    from shared.commercetools.models.customer import Customer

    Customer.model_validate({"id": "c", "version": "x", "email": ["no"]})
    return 0


BRANCHES = [
    (lambda: processor("First", 3), None, ("INFO", "processed",
     {"processor": "First", "klaviyoWrites": 3, **FIELDS})),
    (lambda: Processor("First", Trigger("customer", messages=frozenset({"CustomerCreated"})),
                       invalid_customer), "failed",
     ("ERROR", "resource failed validation; acknowledged",
      {"processor": "First", "invalidFields": ["email", "version"], **FIELDS})),
    (lambda: processor("First", KlaviyoError("x", status=503, code="down", errors=[
        {"source": {"pointer": "/data"}}])), "redeliver",
     ("WARNING", "retryable failure; message will be redelivered",
      {"processor": "First", "error": "KlaviyoError", "status": 503, "errorCode": "down",
       "errorPointers": ["/data"], **FIELDS})),
    (lambda: processor("First", DeadlineExceeded("late")), "redeliver",
     ("WARNING", "retryable failure; message will be redelivered",
      {"processor": "First", "error": "DeadlineExceeded", **FIELDS})),
    (lambda: processor("First", KlaviyoError("x", status=422, code="invalid")), "failed",
     ("ERROR", "terminal failure; acknowledged",
      {"processor": "First", "error": "KlaviyoError", "status": 422, "errorCode": "invalid",
       "errorPointers": [], **FIELDS})),
    (lambda: processor("First", MessageError("odd")), "failed",
     ("ERROR", "terminal failure; acknowledged",
      {"processor": "First", "error": "MessageError", **FIELDS})),
    (lambda: processor("First", CommercetoolsError("x", status=401, code="invalid_token")),
     "redeliver",
     ("ERROR", "credentials refused: fix CTP_CLIENT_ID/CTP_CLIENT_SECRET/CTP_SCOPES; message "
      "will be redelivered",
      {"processor": "First", "error": "CommercetoolsError",
       "fixVariables": "CTP_CLIENT_ID/CTP_CLIENT_SECRET/CTP_SCOPES", "status": 401,
       "errorCode": "invalid_token", "errorPointers": [], **FIELDS})),
    (lambda: processor("First", LookupError("jane@example.org")), "redeliver",
     ("ERROR", "unexpected failure; message will be redelivered",
      {"processor": "First", "error": "LookupError", **FIELDS})),
]


@pytest.mark.parametrize("make, outcome, line", BRANCHES)
def test_each_outcome_logs_one_pinned_line(
    context: Context, caplog: pytest.LogCaptureFixture, make: Any, outcome: str | None,
    line: tuple[str, str, dict[str, Any]],
) -> None:
    caplog.set_level(logging.DEBUG, logger="connector")
    data = cloud_event_data(delivery())
    if outcome == "redeliver":
        with pytest.raises(RedeliveryRequested) as info:
            dispatch(data, [make()], context)
        assert str(info.value) == "redelivery requested by First"
        assert info.value.outcome == Outcome("redeliver", 0, ("First",), ("First",))
    else:
        result = dispatch(data, [make()], context)
        assert result == (Outcome("failed", 0, ("First",)) if outcome == "failed"
                          else Outcome("processed", 3, ("First",)))
    assert lines(caplog) == [line]
    assert "jane@example.org" not in caplog.text


def test_acknowledged_deliveries_log_why(context: Context,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="connector")
    assert dispatch({"message": {"data": "%%%"}}, [], context) == Outcome("malformed")
    subscription = {"notificationType": "ResourceCreated", "projectKey": "p",
                    "resource": {"typeId": "subscription", "id": "sub-1"}, "version": 1}
    assert dispatch(cloud_event_data(subscription), [processor("First", 1)],
                    context) == Outcome("ignored")
    other = {**delivery(), "type": "CustomerEmailChanged"}
    assert dispatch(cloud_event_data(other), [processor("First", 1)],
                    context) == Outcome("ignored")
    assert lines(caplog) == [
        ("WARNING", "malformed message acknowledged",
         {"reason": "Pub/Sub message data is not valid base64"}),
        ("INFO", "subscription test message acknowledged",
         {"ctMessageId": "sub-1@1", "resource": "subscription", "resourceId": "sub-1",
          "messageType": "ResourceCreated"}),
        ("INFO", "no processor for message; acknowledged",
         {**FIELDS, "messageType": "CustomerEmailChanged"}),
    ]


def test_terminal_and_processed_together_is_failed_with_the_writes(context: Context) -> None:
    processors = [processor("First", KlaviyoError("x", status=400)), processor("Second", 2),
                  processor("Third", KlaviyoError("x", status=404)), processor("Fourth", 1)]
    assert dispatch(cloud_event_data(delivery()), processors, context) == Outcome(
        "failed", 3, ("First", "Second", "Third", "Fourth"))


def test_error_types_keep_their_message_and_retry_after() -> None:
    assert str(RetryableError("slow down")) == "slow down"
    assert RetryableError("x").retry_after is None
    assert RetryableError("x", retry_after=2.5).retry_after == 2.5
    assert str(RedeliveryRequested("again")) == "again"
    assert RedeliveryRequested("again").outcome is None
    error = KlaviyoError("boom", status=429, code="throttled", retry_after=4.0)
    assert (str(error), error.status, error.code, error.retry_after) == (
        "boom", 429, "throttled", 4.0)
    assert not ConnectorError("x").retryable and not MessageError("x").retryable
    assert DeadlineExceeded("x").retryable


# ---- boundaries the tables above leave open (found by mutation testing) -----------------------

def chain(depth: int, innermost: BaseException) -> BaseException:
    """`innermost` as the cause `depth - 1` levels below the top of a DeadlineExceeded chain."""
    exc = innermost
    for n in range(depth - 1):
        outer = DeadlineExceeded(f"level {n}")
        outer.__cause__ = exc
        exc = outer
    return exc


def test_auth_failure_is_looked_for_ten_causes_deep() -> None:
    refused = KlaviyoError("x", status=401)
    assert auth_failure_of(chain(1, refused)) is refused
    assert auth_failure_of(chain(10, refused)) is refused
    assert auth_failure_of(chain(11, refused)) is None  # a (cyclic) chain cannot loop forever
    looped = DeadlineExceeded("a")
    looped.__cause__ = looped
    assert auth_failure_of(looped) is None


def test_retry_defaults_eight_attempts_and_an_eight_second_cap() -> None:
    sleeps: list[float] = []
    fn = failing([KlaviyoError("x", status=503) for _ in range(20)])
    with pytest.raises(KlaviyoError):
        call_with_retry(fn, deadline=FixedDeadline(10_000), sleep=sleeps.append, uniform=top)
    assert len(fn.calls) == 8
    assert sleeps == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_retry_passes_the_error_to_on_retry_and_says_why_it_stopped() -> None:
    class Flaky(ConnectorError):  # retryable, with no retry_after of its own
        retryable = True

    seen: list[tuple[int, ConnectorError, float]] = []
    first = Flaky("one")
    fn = failing([first])
    assert call_with_retry(fn, deadline=FixedDeadline(100), sleep=lambda s: None,
                           uniform=top, on_retry=lambda n, e, d: seen.append((n, e, d))) == "ok"
    assert seen == [(1, first, 0.25)]
    cause = KlaviyoError("Klaviyo answered 503", status=503)
    with pytest.raises(DeadlineExceeded) as info:
        call_with_retry(failing([cause]), deadline=FixedDeadline(0.1), uniform=top)
    assert str(info.value) == "deadline reached after 1 attempt(s): Klaviyo answered 503"


def test_validation_failure_names_at_most_twenty_dotted_fields(
    context: Context, caplog: pytest.LogCaptureFixture,
) -> None:
    # Any: a `**dict` is matched against create_model's `__config__`-style keywords too
    fields_: dict[str, Any] = {f"f{n:02d}": (int, ...) for n in range(25)}
    Big = create_model("Big", nested=(list[dict[str, int]], ...), **fields_)

    def handle(message: CtMessage, ctx: Context) -> int:
        Big.model_validate({"nested": [{"a": "not a number"}]})
        return 0

    caplog.set_level(logging.INFO, logger="connector")
    proc = Processor("First", Trigger("customer", messages=frozenset({"CustomerCreated"})), handle)
    assert dispatch(cloud_event_data(delivery()), [proc], context).status == "failed"
    ((_, _, fields),) = lines(caplog)
    expected = sorted([f"f{n:02d}" for n in range(25)] + ["nested.0.a"])[:20]
    assert fields["invalidFields"] == expected and len(expected) == 20


def test_nested_field_names_are_dotted(context: Context,
                                       caplog: pytest.LogCaptureFixture) -> None:
    Small = create_model("Small", nested=(list[dict[str, int]], ...))

    def handle(message: CtMessage, ctx: Context) -> int:
        Small.model_validate({"nested": [{"a": "x"}]})
        return 0

    caplog.set_level(logging.INFO, logger="connector")
    proc = Processor("First", Trigger("customer", messages=frozenset({"CustomerCreated"})), handle)
    dispatch(cloud_event_data(delivery()), [proc], context)
    ((_, _, fields),) = lines(caplog)
    assert fields["invalidFields"] == ["nested.0.a"]


def test_redelivery_names_every_processor_that_asked(context: Context) -> None:
    processors = [processor("First", KlaviyoError("x", status=500)), processor("Second", 1),
                  processor("Third", KeyError("bug"))]
    with pytest.raises(RedeliveryRequested) as info:
        dispatch(cloud_event_data(delivery()), processors, context)
    assert str(info.value) == "redelivery requested by First, Third"
