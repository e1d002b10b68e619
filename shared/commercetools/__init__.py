"""commercetools: the read client (raw JSON, client-credentials auth, deadline-bounded retries,
keyset paging), plus messages/models owned by their own modules.

The client is exported lazily so that importing `shared.commercetools.models` (pure mapping code)
does not load the HTTP layer.
"""

from typing import Any

__all__ = ["MAX_LIMIT", "RESOURCES", "CommercetoolsClient", "predicate_string"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from shared.commercetools import client

        return getattr(client, name)
    raise AttributeError(f"module 'shared.commercetools' has no attribute {name!r}")
