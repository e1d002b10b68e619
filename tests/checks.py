"""Small typed checks shared by the tests."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def known(value: T | None, what: object = None) -> T:
    """A value the test knows is there (a job, a lock, a resource it just stored): None fails the
    test here, naming `what`, rather than as a TypeError or AttributeError further on; and the
    type checker sees the value as present."""
    assert value is not None, what
    return value
