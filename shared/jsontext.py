"""JSON in and out without lone UTF-16 surrogates.

`"\\ud800"` is valid JSON and `json.loads` accepts it, but the resulting str cannot be encoded
as UTF-8: one such character in any commercetools text (a name, an address line, an attribute)
would raise `UnicodeEncodeError` wherever it is written out (a Klaviyo request, a Pub/Sub task,
Firestore), outside every handler. So every JSON document the connector reads is scrubbed as it
is parsed (each lone surrogate becomes U+FFFD, the replacement character, as a UTF-8 decoder
would make of it), and every body it writes is encoded the same way.

A lone surrogate can only come from a `\\uD800`–`\\uDFFF` escape (UTF-8 bytes cannot hold one),
so documents without such an escape, nearly all of them, skip the walk.
"""

from __future__ import annotations

import json
import re
from typing import Any

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")
_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def scrub(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub(REPLACEMENT, value)
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def loads(data: str | bytes | bytearray) -> Any:
    """`json.loads`, with lone surrogates replaced (raises what json.loads raises)."""
    value = json.loads(data)
    escapes = _ESCAPE_TEXT if isinstance(data, str) else _ESCAPE_BYTES
    if escapes.search(data):  # type: ignore[arg-type]
        return scrub(value)
    return value


def dumps(value: Any, **kwargs: Any) -> bytes:
    """UTF-8 JSON (compact, non-ASCII kept as is), lone surrogates replaced."""
    kwargs.setdefault("separators", (",", ":"))
    kwargs.setdefault("ensure_ascii", False)
    text = json.dumps(value, **kwargs)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub(REPLACEMENT, text).encode()
