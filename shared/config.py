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

    # Orders, payments and refunds (realtime + bulk)
    # (end of orders settings)

    # Catalog: categories, products, variants, inventory (realtime + bulk)
    # (end of catalog settings)

    # Bulk import
    # (end of bulk settings)

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
        problems.append(f"{name} ({'missing' if item['type'] == 'missing' else item['msg']})")
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
