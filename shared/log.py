"""Structured JSON log lines that Cloud Logging understands (`severity`, `message`, fields).

Only ids, counts, statuses and error codes go into fields. Never pass emails, names, phones or
addresses: there is no scrubbing here because nothing should need it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # Type only: exception text can echo API bodies and so customer data.
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, separators=(",", ":"))


class Logger:
    """`log.info("profile upserted", ctId=..., status=...)`: keyword fields become JSON fields."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, message: str, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            # A field named like a LogRecord attribute (`created`, `name`…) would make logging
            # raise, turning a log line into a failed invocation; keep it under another name.
            safe = {(f"{k}_" if k in _RESERVED else k): v for k, v in fields.items()}
            self._logger.log(level, message, extra=safe)

    def debug(self, message: str, **fields: Any) -> None:
        self._log(logging.DEBUG, message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._log(logging.INFO, message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._log(logging.WARNING, message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._log(logging.ERROR, message, fields)


_configured = False
_handler: logging.StreamHandler[Any] | None = None


def configure(level: str = "INFO", *, stream: Any = None) -> None:
    """Send the connector's logs to stdout (or `stream`: the CLI keeps stdout for its output)
    as JSON lines (idempotent)."""
    global _configured, _handler
    root = logging.getLogger("connector")
    root.setLevel(level.upper())
    if not _configured:
        _handler = logging.StreamHandler(stream or sys.stdout)
        _handler.setFormatter(JsonFormatter())
        root.addHandler(_handler)
        root.propagate = True  # lets pytest's caplog see records too
        _configured = True
    elif stream is not None and _handler is not None:
        _handler.setStream(stream)


def get_logger(name: str) -> Logger:
    return Logger(f"connector.{name}")
