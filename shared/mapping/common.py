"""Small conversions every mapper needs: localized text, money, timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

from shared.commercetools.models.base import LocalizedString, Money

_LOCALE = re.compile(r"^[A-Za-z]{2,4}([_-][A-Za-z]{4})?([_-]([A-Za-z]{2}|[0-9]{3}))?$")


@lru_cache(maxsize=64)
def _locale_keys(locale: str) -> tuple[str, ...]:
    """The keys `localized` tries for a locale, in order (none for a malformed locale)."""
    if not _LOCALE.match(locale):
        return ()
    return tuple(dict.fromkeys((locale, locale.replace("_", "-"), re.split(r"[-_]", locale)[0])))


def localized(text: LocalizedString | None, locale: str | None = None) -> str | None:
    """The preferred locale's value, else its language's (`en` for `en-US`), else the first one."""
    if not text:
        return None
    if locale:
        for key in _locale_keys(locale):
            if text.get(key):
                return text[key]
    return next((value for value in text.values() if value), None)


def resource_locale(text: LocalizedString | None, locale: str | None = None) -> str | None:
    """The one locale to read all of a resource's localized fields in, chosen from its main
    field (a product's or line item's name): the key `localized` would pick there.

    Without it, a name could come from one language and a slug from another (an English name
    next to a German slug: a storefront link that may 404).
    """
    if not text:
        return locale
    if locale:
        for key in _locale_keys(locale):
            if text.get(key):
                return key
    return next((key for key, value in text.items() if value), locale)


def money_value(money: Money | None) -> float:
    """Major units as a JSON number (Klaviyo's `value`), rounded to the currency's digits."""
    if money is None:
        return 0.0
    return float(money.amount.quantize(Decimal(1).scaleb(-money.fraction_digits)))


def parse_time(timestamp: str) -> datetime:
    """A commercetools timestamp (ISO 8601, `Z` or an offset; naive means UTC) as an aware
    datetime; ValueError when it is not one."""
    parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    """An ISO-8601 UTC time as Klaviyo takes it (milliseconds, `Z`)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def klaviyo_time(timestamp: str) -> str:
    """An ISO-8601 UTC time Klaviyo accepts, from a commercetools timestamp."""
    return format_time(parse_time(timestamp))
