"""The catalog processors' mapping configuration is built once, when the processors are set up
(`shared.processors.catalog.processors(settings)`), not on every delivery."""

from __future__ import annotations

from typing import Any

import pytest

from shared.commercetools.client import CommercetoolsClient
from shared.klaviyo import KlaviyoClient
from shared.mapping.catalog import CatalogConfig
from tests import test_realtime_catalog as catalog
from tests.fakes.commercetools import FakeCommercetools
from tests.fakes.klaviyo import FakeKlaviyo
from tests.seam import make_seam


def test_catalog_config_is_built_once_for_many_deliveries(
    ct: FakeCommercetools, klaviyo: FakeKlaviyo, ct_client: CommercetoolsClient,
    klaviyo_client: KlaviyoClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[CatalogConfig] = []
    from_settings = CatalogConfig.from_settings

    def counting(settings: Any) -> CatalogConfig:
        built.append(from_settings(settings))
        return built[-1]

    monkeypatch.setattr(CatalogConfig, "from_settings", counting)
    seam = make_seam(ct, klaviyo, ct_client, klaviyo_client, preferred_currency="CHF",
                     product_url_template="https://shop.example/p/{slug}?sku={sku}")
    assert len(built) == 1  # the processors' set-up
    ct.add("categories", catalog.category_doc("c-1", "Shoes"))
    ct.add("products", catalog.product_doc(categories=()))
    ct.add("inventory", catalog.inventory_doc("e-1", "SKU-1", 7))

    deliveries = [
        catalog.message("category", "c-1", "CategoryCreated"),
        catalog.published(),
        catalog.change("ResourceUpdated", "product", "p-1"),
        catalog.change("ResourceUpdated", "inventory-entry", "e-1", identifiers={"sku": "SKU-1"}),
    ]
    outcomes = [seam.deliver(delivery).outcome for delivery in deliveries]

    assert [o.status for o in outcomes] == ["processed"] * 4
    assert outcomes[1].writes >= 1 and outcomes[3].writes == 1  # the item written, the stock set
    assert len(built) == 1
