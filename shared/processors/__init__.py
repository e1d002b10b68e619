"""Realtime processors: which commercetools deliveries become which Klaviyo writes.

`all_processors(settings)` is the registry (each module's `processors(settings)`, which builds
that module's mapping configuration once); `enabled_processors` leaves out DISABLED_PROCESSORS.
The realtime function, the commercetools subscription setup and dead-letter replay all read it.
A new processor also needs a case in tests/test_processor_contract.py (README: "Adding a message
type").
"""

from __future__ import annotations

from shared.config import Settings
from shared.errors import ConfigError
from shared.processors import catalog, checkout, consent, customers, deletion, orders
from shared.processors.base import Context, Processor, Trigger

__all__ = ["Context", "Processor", "Trigger", "all_processors", "enabled_processors"]


def all_processors(settings: Settings) -> list[Processor]:
    return [
        *customers.processors(settings),
        *orders.processors(settings),
        *catalog.processors(settings),
        *checkout.processors(settings),
        *consent.processors(settings),
        *deletion.processors(settings),
    ]


def enabled_processors(settings: Settings) -> list[Processor]:
    processors = all_processors(settings)
    disabled = set(settings.disabled_processors)
    # A misspelt name must not silently leave a processor running (the reference plugin's
    # " OrderStateChanged" could never be disabled).
    unknown = disabled - {p.name for p in processors}
    if unknown:
        known = ", ".join(sorted(p.name for p in processors))
        raise ConfigError(
            f"invalid configuration: DISABLED_PROCESSORS (unknown {', '.join(sorted(unknown))}; "
            f"known: {known})"
        )
    return [p for p in processors if p.name not in disabled]
