"""Structured log lines: Cloud Logging's shape, and no crash on awkward field names."""

from __future__ import annotations

import json
import logging

import pytest

from shared.log import JsonFormatter, get_logger


def test_fields_become_json_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    get_logger("t").warning("batch sent", jobId="j-1", sent=3)
    line = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert line["severity"] == "WARNING" and line["message"] == "batch sent"
    assert line["jobId"] == "j-1" and line["sent"] == 3


def test_field_named_like_a_record_attribute_does_not_raise(
    caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    get_logger("t").info("item", created=2, name="x", msg="m")
    line = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert line["message"] == "item"
    assert (line["created_"], line["name_"], line["msg_"]) == (2, "x", "m")


def test_exception_text_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    try:
        raise ValueError("jane@example.org")
    except ValueError:
        logging.getLogger("connector.t").exception("failed")
    line = JsonFormatter().format(caplog.records[-1])
    assert "jane@example.org" not in line and json.loads(line)["exception"] == "ValueError"
