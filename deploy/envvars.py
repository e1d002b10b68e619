"""The functions' environment variables, for `gcloud functions deploy --env-vars-file` (deploy.sh).

    python -m deploy.envvars [--set NAME=VALUE ...] [--allow-test-urls] > env.yaml
    python -m deploy.envvars --secret NAME      # a secret's value from the environment or .env

Reads the connector's settings the way the functions do (environment first, then `.env` or
CONNECTOR_ENV_FILE), keeps the ones that are explicitly set, leaves out what must not be deployed
as a plain variable (secrets, which go to Secret Manager; emulator hosts; the embedded-state file)
and applies the `--set` overrides (what deploy.sh decides itself: GOOGLE_CLOUD_PROJECT, the bulk
backend and topic). The result is validated like the functions validate it at start-up, so a bad
setting fails the deployment here, with one line naming the variable, instead of every cold start.

Settings that point the deployment at a test double are refused unless --allow-test-urls: a
commercetools URL on a loopback, private or link-local address or `localhost`, or over plain
http; any KLAVIYO_BASE_URL other than Klaviyo's own.

The list of settings is `shared.config.Settings` itself: a setting added there is deployed as
soon as it is set, with no list to update here.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import typing
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from pydantic import SecretStr

from shared.config import Settings
from shared.errors import ConfigError

# Never deployed as plain environment variables.
LOCAL_ONLY = frozenset({"firestore_emulator_host", "pubsub_emulator_host", "bulk_local_state_file"})


def secret_fields() -> frozenset[str]:
    """Settings typed SecretStr (they are deployed through Secret Manager)."""
    names = set()
    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        if annotation is SecretStr or SecretStr in typing.get_args(annotation):
            names.add(name)
    return frozenset(names)


def _env_file_values() -> dict[str, str]:
    path = Settings.model_config.get("env_file")
    if not path or not os.path.isfile(str(path)):
        return {}
    from dotenv import dotenv_values  # a pydantic-settings dependency

    return {k: v for k, v in dotenv_values(str(path)).items() if v is not None}


def collect(environ: Mapping[str, str], file_values: Mapping[str, str],
            overrides: Mapping[str, str]) -> dict[str, str]:
    """NAME -> value of every deployable setting that is set (environment over file)."""
    wanted = set(Settings.model_fields) - secret_fields() - LOCAL_ONLY
    by_lower: dict[str, str] = {}
    for source in (file_values, environ):  # later sources win, as in pydantic-settings
        for name, value in source.items():
            if name.lower() in wanted:
                by_lower[name.lower()] = value
    for name, value in overrides.items():
        if name.lower() not in Settings.model_fields:
            raise ConfigError(f"--set {name}: not a setting of the connector")
        by_lower[name.lower()] = value
    return {name.upper(): value for name, value in sorted(by_lower.items())}


def validate(values: Mapping[str, str]) -> None:
    """Build Settings from exactly these values (secrets stubbed) and the processor list: raises
    ConfigError as the functions would at start-up."""
    from shared.config import load_settings

    stub = {name: "deploy-check" for name in secret_fields()}
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.lower() in Settings.model_fields:
                del os.environ[name]
        os.environ.update(values)
        settings = load_settings(_env_file=None, **stub)
        from shared.processors import enabled_processors

        enabled_processors(settings)  # a misspelt DISABLED_PROCESSORS name fails here too
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _test_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost") or not host:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local \
        or address.is_unspecified


def test_urls(values: Mapping[str, str]) -> list[str]:
    """The settings that point at a test double rather than the real services (one line each)."""
    problems = []
    for name in ("CTP_API_URL", "CTP_AUTH_URL"):
        url = values.get(name)
        if url is None:
            continue
        parts = urlsplit(url)
        if _test_host(parts.hostname or ""):
            problems.append(f"{name}={url} is a local address")
        elif parts.scheme != "https":
            problems.append(f"{name}={url} is not https")
    default = str(Settings.model_fields["klaviyo_base_url"].default)
    klaviyo = values.get("KLAVIYO_BASE_URL")
    if klaviyo is not None and klaviyo.rstrip("/") != default:
        problems.append(f"KLAVIYO_BASE_URL={klaviyo} is not Klaviyo's API ({default})")
    return problems


def secret_value(name: str, environ: Mapping[str, str]) -> str:
    """A secret setting's value: the environment first, then the settings file (may be "")."""
    if name.lower() not in secret_fields():
        raise ConfigError(f"--secret {name}: not a secret setting of the connector")
    for source in (environ, _env_file_values()):
        for key, value in source.items():
            if key.lower() == name.lower() and value:
                return value
    return ""


def to_yaml(values: Mapping[str, str]) -> str:
    # JSON strings are YAML strings: every value stays a string, whatever it looks like.
    return "".join(f"{name}: {json.dumps(value)}\n" for name, value in values.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.envvars",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="set (or override) one variable")
    parser.add_argument("--allow-test-urls", action="store_true",
                        help="deploy local or test-double service URLs anyway")
    parser.add_argument("--secret", metavar="NAME",
                        help="print this secret's value (environment, then .env) and stop")
    args = parser.parse_args(argv)
    if args.secret:
        try:
            sys.stdout.write(secret_value(args.secret, os.environ))
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    overrides = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected NAME=VALUE")
        overrides[name] = value
    try:
        values = collect(os.environ, _env_file_values(), overrides)
        validate(values)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = [] if args.allow_test_urls else test_urls(values)
    if problems:
        print(f"error: {'; '.join(problems)}: this would deploy a test setup (pass "
              "--allow-test-urls to deploy it anyway)", file=sys.stderr)
        return 2
    sys.stdout.write(to_yaml(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
