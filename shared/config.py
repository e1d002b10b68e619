"""Configuration from environment variables (and a `.env` file), validated once at start-up.

Variable names are the ones commercetools' Merchant Center exports (CTP_*), Klaviyo's (KLAVIYO_*)
and Google Cloud's standard ones. A missing or invalid setting raises ConfigError with one line
that names every offending variable; secret values never appear in reprs or errors.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.errors import ConfigError
from shared.setting_syntax import (
    check_checkout_url_template,
    check_url_template,
    checkout_signal_parts,
)

# Klaviyo revisions are dated; 2026-04-15 or later is needed for `backfill` on bulk events.
DEFAULT_KLAVIYO_REVISION = "2026-07-15"

CommaList = Annotated[tuple[str, ...], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=os.environ.get("CONNECTOR_ENV_FILE", ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,
    )

    # commercetools API client (names as exported by the Merchant Center)
    ctp_project_key: str = Field(min_length=1)
    ctp_client_id: str = Field(min_length=1)
    ctp_client_secret: SecretStr
    ctp_scopes: str = ""  # space-separated; empty means manage_project:<project key>
    ctp_api_url: str = Field(pattern=r"^https?://\S+$")
    ctp_auth_url: str = Field(pattern=r"^https?://\S+$")

    # Klaviyo
    klaviyo_api_key: SecretStr
    klaviyo_base_url: str = Field("https://a.klaviyo.com", pattern=r"^https?://\S+$")
    klaviyo_api_revision: str = Field(
        DEFAULT_KLAVIYO_REVISION, pattern=r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$"
    )
    # Local preview (`make run`): Klaviyo requests go to the local preview sink. Never on Cloud
    # Functions, where nothing would show what was "sent" and the merchant would think it synced.
    klaviyo_preview: bool = False

    @field_validator("ctp_client_secret", "klaviyo_api_key")
    @classmethod
    def _secret_not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("empty")
        return value

    @field_validator("klaviyo_preview")
    @classmethod
    def _preview_only_locally(cls, value: bool) -> bool:
        # K_SERVICE: set by Cloud Run (functions-framework sets FUNCTION_TARGET locally too)
        if value and os.environ.get("K_SERVICE"):
            raise ValueError("only for local runs (make run), not on Cloud Functions")
        return value

    # Google Cloud (absent locally: the bulk function then uses its embedded state and queue)
    google_cloud_project: str | None = None
    firestore_emulator_host: str | None = None
    pubsub_emulator_host: str | None = None

    # Behaviour
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    realtime_deadline_seconds: float = Field(50.0, gt=0, le=540)
    disabled_processors: CommaList = ()
    preferred_locale: str | None = None
    customer_properties_include: CommaList = ()
    customer_properties_exclude: CommaList = ()
    # JSON object renaming customer custom fields as profile properties, like
    # ORDER_PROPERTIES_RENAME (keeps the names a merchant's reference-plugin segments use).
    customer_properties_rename: Annotated[dict[str, str], NoDecode] = {}

    # Orders, payments and refunds (realtime + bulk)
    # Messages that send Placed Order + Ordered Product, whatever the order's state (the reference
    # skipped orders not created Open, so imported orders never reached Klaviyo).
    order_created_messages: CommaList = ("OrderCreated", "OrderImported", "OrderCustomerSet")
    # Deliveries that may send Fulfilled/Cancelled Order: OrderStateChanged,
    # OrderShipmentStateChanged and/or ResourceUpdated (the order change notification).
    order_state_change_triggers: CommaList = ("OrderStateChanged", "OrderShipmentStateChanged")
    # JSON objects {"<state>": "<metric name>"}. Unset: Cancelled → METRIC_CANCELLED_ORDER,
    # Confirmed/Complete → METRIC_FULFILLED_ORDER; shipment Shipped/Delivered → Fulfilled.
    order_state_metrics: Annotated[dict[str, str] | None, NoDecode] = None
    order_shipment_state_metrics: Annotated[dict[str, str] | None, NoDecode] = None
    metric_placed_order: str = Field("Placed Order", min_length=1, max_length=127)
    metric_ordered_product: str = Field("Ordered Product", min_length=1, max_length=127)
    metric_fulfilled_order: str = Field("Fulfilled Order", min_length=1, max_length=127)
    metric_cancelled_order: str = Field("Cancelled Order", min_length=1, max_length=127)
    metric_refunded_order: str = Field("Refunded Order", min_length=1, max_length=127)
    # Raw order fields sent as event properties besides the Klaviyo order structure: top-level
    # names, `custom.<field>` for a custom field, `*` / `custom.*` for all. Default: none (the
    # whole order is too large for Klaviyo's limits and carries addresses).
    order_properties_include: CommaList = ()
    order_properties_exclude: CommaList = ()
    order_properties_rename: Annotated[dict[str, str], NoDecode] = {}
    # (ProductURL uses PRODUCT_URL_TEMPLATE from the catalog settings.)

    _split_orders = field_validator(
        "order_created_messages",
        "order_state_change_triggers",
        "order_properties_include",
        "order_properties_exclude",
        mode="before",
    )(_split_commas)

    @field_validator("order_state_metrics", "order_shipment_state_metrics", mode="before")
    @classmethod
    def _state_map(cls, value: object) -> object:
        value = cls._json_object(value, empty=None)
        if isinstance(value, dict) and any(len(metric) > 127 for metric in value.values()):
            raise ValueError("metric names must be shorter than 128 characters")
        return value

    @field_validator("order_properties_rename", mode="before")
    @classmethod
    def _rename_map(cls, value: object) -> object:
        return cls._json_object(value, empty={})

    @classmethod
    def _json_object(cls, value: object, *, empty: object) -> object:
        if isinstance(value, str):
            import json  # local: the module's import block belongs to everyone

            if not value.strip():  # an empty variable means unset
                return empty
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError('must be a JSON object such as {"a": "b"}') from None
        if value is not None and not (
            isinstance(value, dict)
            and all(isinstance(k, str) and isinstance(v, str) and v for k, v in value.items())
        ):
            raise ValueError("must be a JSON object of non-empty strings")
        return value

    @field_validator("order_state_change_triggers", mode="after")
    @classmethod
    def _known_triggers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        allowed = {"OrderStateChanged", "OrderShipmentStateChanged", "ResourceUpdated"}
        unknown = [t for t in value if t not in allowed]
        if unknown:
            raise ValueError(f"unknown {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        return value

    # Order mapping additions (issue 15): variant attributes on Ordered Product and Items[]
    # (`Attributes`; include empty = all), the attribute naming an item's Brand, and the order
    # states that send Placed Order (empty: any state).
    order_item_attributes_include: CommaList = ()
    order_item_attributes_exclude: CommaList = ()
    order_brand_attribute: str | None = None
    placed_order_states: CommaList = ()

    _split_order_mapping = field_validator(
        "order_item_attributes_include", "order_item_attributes_exclude", "placed_order_states",
        mode="before",
    )(_split_commas)

    @field_validator("customer_properties_rename", mode="before")
    @classmethod
    def _customer_rename_map(cls, value: object) -> object:
        return cls._json_object(value, empty={})

    @field_validator("order_brand_attribute", mode="before")
    @classmethod
    def _brand_blank_is_unset(cls, value: object) -> object:
        return (value.strip() or None) if isinstance(value, str) else value
    # (end of orders settings)

    # Catalog: categories, products, variants, inventory (realtime + bulk)
    # ISO 4217 code of the prices sent as item/variant `price`; unset: the first matching price.
    preferred_currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    # Storefront URL of a product; placeholders {slug} {id} {key} {sku} (the reference plugin's
    # {{productSlug}} is accepted too). Also meant for order events' ProductURL.
    product_url_template: str | None = None
    # Supply channel whose stock becomes `inventory_quantity`; unset: channel-less stock only.
    inventory_channel_id: str | None = None
    # Product/variant attributes copied into catalog `custom_metadata` (opt-in by name; flat
    # display values, within Klaviyo's 100 KB).
    catalog_attributes: CommaList = ()

    _split_catalog = field_validator("catalog_attributes", mode="before")(_split_commas)

    @field_validator("product_url_template", "inventory_channel_id", mode="before")
    @classmethod
    def _catalog_blank_is_unset(cls, value: object) -> object:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("preferred_currency", mode="before")
    @classmethod
    def _catalog_currency(cls, value: object) -> object:
        return (value.strip().upper() or None) if isinstance(value, str) else value

    @field_validator("product_url_template")
    @classmethod
    def _catalog_url_placeholders(cls, value: str | None) -> str | None:
        if value is not None:
            check_url_template(value)
        return value
    # (end of catalog settings)

    # Bulk import
    # Exporters: commercetools page size (keyset paging) and first wait between catalog job polls.
    bulk_page_size: int = Field(500, ge=1, le=500)
    bulk_job_poll_seconds: float = Field(1.0, gt=0, le=60)
    # Klaviyo-side verification (shared/bulk/verification.py): how long a page task waits for
    # Klaviyo to finish the profile import jobs it checks before leaving them to the next task.
    bulk_verify_wait_seconds: float = Field(60.0, ge=0, le=300)
    # Job runner (job state, one-job-per-kind lock, page tasks). Without GOOGLE_CLOUD_PROJECT and
    # the emulator hosts the runner is embedded (state in BULK_LOCAL_STATE_FILE, in-process queue).
    bulk_backend: Literal["auto", "gcp", "local"] = "auto"
    bulk_tasks_topic: str = Field(  # topic id, or projects/<project>/topics/<id>
        "bulk-page-tasks", pattern=r"^(projects/[^/\s]+/topics/)?[A-Za-z][A-Za-z0-9._~+%-]{2,254}$"
    )
    bulk_collection_prefix: str = Field("bulk_", pattern=r"^[A-Za-z0-9_-]{0,40}$")
    # Time one page task may spend exporting a batch; keep it below the worker's function timeout
    # (event functions: at most 540 s) with room to save the cursor and publish the next task.
    bulk_batch_deadline_seconds: float = Field(420.0, gt=0, le=540)
    # A job's lock lapses this long after its last saved batch (a crashed job can be taken over).
    bulk_lease_seconds: float = Field(900.0, gt=0, le=7 * 24 * 3600)
    bulk_max_batch_attempts: int = Field(10, ge=1, le=1000)  # retryable failures of one batch
    bulk_max_ids: int = Field(10_000, ge=1, le=10_000)  # per partial sync request
    bulk_max_errors: int = Field(100, ge=0, le=1000)  # record errors kept on a job
    bulk_max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, le=32 * 1024 * 1024)
    # Partitions of a full customers / orders sync: parallel chains of page tasks over id ranges
    # (shared/bulk/partitions.py); 1 = one chain. And the share of Klaviyo's per-account bulk
    # limits the bulk workers take together (shared/bulk/budget.py); the rest is the realtime
    # function's. 8 partitions take the whole event budget (150/min) and read 1M customers in
    # about 2 minutes; at most 10 keeps every partition's slots at least a second apart.
    bulk_partitions_customers: int = Field(8, ge=1, le=64)
    bulk_partitions_orders: int = Field(8, ge=1, le=64)
    bulk_klaviyo_share: float = Field(0.9, gt=0, le=1)
    bulk_local_state_file: str = ".local/bulk-state.json"  # empty: embedded state in memory only
    # Firestore database of the job state (deploy.sh creates one for the connector alone).
    bulk_firestore_database: str = Field("(default)",
                                         pattern=r"^(\(default\)|[a-z][a-z0-9-]{2,62})$")
    # Callers of the /sync API. none: no caller check (local runs: the CLI's prompt guards
    # deleteAll). id-token: API Gateway's verified Google ID token (X-Apigateway-Api-Userinfo) is
    # required. id-token-or-api-key: also callers with the gateway's API key, who are anonymous.
    bulk_auth: Literal["none", "id-token", "id-token-or-api-key"] = "none"
    # Behind the gateway: principals (service account or user emails from the ID token, or
    # *@domain) allowed to call the API, and those also allowed deleteAll. Google signs ID tokens
    # for any account, so the gateway's check alone lets any Google account in.
    bulk_callers: CommaList = ()
    bulk_admins: CommaList = ()
    _split_principals = field_validator("bulk_callers", "bulk_admins",
                                        mode="before")(_split_commas)

    @field_validator("bulk_lease_seconds")
    @classmethod
    def _bulk_lease_above_deadline(cls, value: float, info) -> float:  # type: ignore[no-untyped-def]
        deadline = info.data.get("bulk_batch_deadline_seconds")
        if deadline is not None and value <= deadline:
            raise ValueError("must be greater than BULK_BATCH_DEADLINE_SECONDS")
        return value
    # (end of bulk settings)

    # Checkout, consent and deletion
    # Started Checkout (cart change notifications). CHECKOUT_SIGNAL says when a cart with line items
    # and an email is "in checkout": shipping_address (default) | custom_field:<name> | any_update.
    checkout_signal: str = "shipping_address"
    # Link back to the checkout in the event (CheckoutURL): https://shop.example/checkout/{cartId}
    checkout_url_template: str | None = None
    metric_started_checkout: str = Field("Started Checkout", min_length=1, max_length=127)
    # Marketing consent from customer custom fields (boolean, enum/lenum key or string). Unset:
    # nothing about consent is ever sent; a profile is never subscribed without the field.
    consent_field: str | None = None  # email marketing
    consent_sms_field: str | None = None  # SMS marketing (needs an E.164 phone on the customer)
    consent_list_id: str | None = Field(None, validate_default=True)  # required with a field
    # Enum keys / strings meaning yes and no (case-insensitive); booleans need no mapping.
    consent_granted_values: CommaList = ("true", "yes")
    consent_withdrawn_values: CommaList = ("false", "no")
    # true: consent is recorded as given at the customer's lastModifiedAt (Klaviyo's
    # `historical_import`, which skips double opt-in and "Added to List" flows); false: Klaviyo's
    # list opt-in settings apply and consent is dated when Klaviyo processes it.
    consent_historical_import: bool = True
    # GDPR: CustomerDeleted → Klaviyo data-privacy deletion of the profile. Irreversible: off.
    customer_deletion_enabled: bool = False

    _split_consent = field_validator(
        "consent_granted_values", "consent_withdrawn_values", mode="before"
    )(_split_commas)

    @field_validator(
        "checkout_url_template", "consent_field", "consent_sms_field", "consent_list_id",
        mode="before",
    )
    @classmethod
    def _ccd_blank_is_unset(cls, value: object) -> object:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("checkout_signal")
    @classmethod
    def _ccd_signal(cls, value: str) -> str:
        checkout_signal_parts(value)
        return value.strip()

    @field_validator("checkout_url_template")
    @classmethod
    def _ccd_checkout_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_checkout_url_template(value)
        return value

    @field_validator("consent_list_id")
    @classmethod
    def _ccd_list_needed(  # type: ignore[no-untyped-def]
        cls, value: str | None, info
    ) -> str | None:
        # Subscribing without a list would follow the account's default opt-in silently.
        if value is None and (info.data.get("consent_field") or info.data.get("consent_sms_field")):
            raise ValueError("required when CONSENT_FIELD or CONSENT_SMS_FIELD is set")
        return value

    @field_validator("consent_withdrawn_values")
    @classmethod
    def _ccd_values_disjoint(  # type: ignore[no-untyped-def]
        cls, value: tuple[str, ...], info
    ) -> tuple[str, ...]:
        granted = {v.casefold() for v in info.data.get("consent_granted_values") or ()}
        both = sorted(v for v in value if v.casefold() in granted)
        if both:
            raise ValueError(f"{', '.join(both)} also in CONSENT_GRANTED_VALUES")
        return value
    # (end of checkout/consent/deletion settings)

    _split = field_validator(
        "disabled_processors",
        "customer_properties_include",
        "customer_properties_exclude",
        mode="before",
    )(_split_commas)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def ct_scopes(self) -> list[str]:
        return self.ctp_scopes.split() or [f"manage_project:{self.ctp_project_key}"]


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]).upper() if item["loc"] else "?"
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{name} ({'missing' if item['type'] == 'missing' else message})")
    return "invalid configuration: " + ", ".join(problems)


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings; ConfigError names every bad variable in one line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
