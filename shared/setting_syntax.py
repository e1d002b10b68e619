"""The syntax of setting values that name templates and signals.

Configuration checks these at start-up (a typo fails the deploy, not every write) and the mappers
use them to build payloads; both import this module, which imports neither, so configuration
stays below everything that reads it.
"""

from __future__ import annotations

import string
from typing import Literal

# PRODUCT_URL_TEMPLATE
URL_PLACEHOLDERS = frozenset({"slug", "id", "key", "sku"})
REFERENCE_SLUG_PLACEHOLDER = "{{productSlug}}"  # the reference plugin's syntax, still accepted
# CHECKOUT_URL_TEMPLATE
CHECKOUT_URL_PLACEHOLDERS = frozenset({"cartId"})
# CHECKOUT_SIGNAL
SignalKind = Literal["shipping_address", "custom_field", "any_update"]


def normalise_url_template(template: str) -> str:
    return template.replace(REFERENCE_SLUG_PLACEHOLDER, "{slug}")


def _check_placeholders(template: str, allowed: frozenset[str]) -> None:
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"malformed placeholder ({exc})") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in allowed:
            names = ", ".join("{" + p + "}" for p in sorted(allowed))
            raise ValueError(f"unknown placeholder {{{name}}}; use {names}")
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} takes no conversion or format")


def check_url_template(template: str) -> None:
    """Raise ValueError unless every placeholder is one of URL_PLACEHOLDERS (`{{` is a literal
    `{`)."""
    _check_placeholders(normalise_url_template(template), URL_PLACEHOLDERS)


def check_checkout_url_template(template: str) -> None:
    """Raise ValueError unless the only placeholder is {cartId} (`{{` is a literal `{`)."""
    _check_placeholders(template, CHECKOUT_URL_PLACEHOLDERS)


def checkout_signal_parts(text: str) -> tuple[SignalKind, str | None]:
    """`shipping_address` | `any_update` | `custom_field:<name>` → (kind, field name); ValueError
    otherwise."""
    text = text.strip()
    if text == "shipping_address":
        return "shipping_address", None
    if text == "any_update":
        return "any_update", None
    kind, _, name = text.partition(":")
    if kind == "custom_field" and name.strip():
        return "custom_field", name.strip()
    raise ValueError("must be shipping_address, any_update or custom_field:<field name>")
