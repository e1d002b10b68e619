"""Klaviyo's `op(field,value),op(field,value)` filter syntax."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fakes.klaviyo.errors import ApiFailure, error_object

_TERM_RE = re.compile(r"^([a-z-]+)\(([\w.$]+),(.*)\)$", re.S)


def parse_filter(expression: str) -> list[tuple[str, str, Any]]:
    terms, depth, quoted, escaped, start = [], 0, False, False, 0
    for i, ch in enumerate(expression):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            terms.append(expression[start:i])
            start = i + 1
    terms.append(expression[start:])
    parsed = []
    for term in terms:
        m = _TERM_RE.match(term.strip())
        if not m:
            raise ApiFailure(400, [error_object(400, "invalid", "Invalid input.",
                                                f"Invalid filter term {term!r}",
                                                parameter="filter")])
        raw = m.group(3).strip()
        try:
            value = json.loads(raw)
        except ValueError:
            raise ApiFailure(400, [error_object(400, "invalid", "Invalid input.",
                                                f"Invalid filter value {raw!r}",
                                                parameter="filter")]) from None
        parsed.append((m.group(1), m.group(2), value))
    return parsed
