"""What the operator tools (`deploy.locks`, `deploy.deadletters`) share: one-line answers to a
missing dependency or credential instead of a traceback, and who the operator is (for the audit
line of a lock release).

Both tools read the deployed project with the caller's Application Default Credentials, which
`gcloud auth login` does not create: `gcloud auth application-default login` does.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable

LOGIN = "gcloud auth application-default login"


def one_line_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a tool's main(): a missing venv package or credential ends with one line on stderr
    saying what to run, and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return main(*args, **kwargs)
        except ModuleNotFoundError as exc:
            print(f"error: {exc.name} is not installed here: run the tool with the connector's "
                  f"venv (make install, then .venv/bin/python -m {_module(main)} ...)",
                  file=sys.stderr)
            return 2
        except Exception as exc:
            message = credential_problem(exc)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            return 2

    return wrapper


def _module(fn: Callable[..., int]) -> str:
    """The tool's module name, also when it runs as `python -m` (then it is __main__)."""
    if fn.__module__ != "__main__":
        return fn.__module__
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return spec.name if spec is not None else "deploy.<tool>"


def credential_problem(exc: BaseException) -> str | None:
    """The one-line explanation of a Google credential failure, or None for anything else."""
    try:
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth
    except ModuleNotFoundError:
        return None
    if isinstance(exc, auth.DefaultCredentialsError):
        return f"no Application Default Credentials: run `{LOGIN}` (or set " \
               "GOOGLE_APPLICATION_CREDENTIALS), then try again"
    if isinstance(exc, auth.RefreshError):
        return f"the Application Default Credentials were refused or expired: run `{LOGIN}` again"
    if isinstance(exc, api.Unauthenticated):
        return f"Google Cloud refused the credentials: run `{LOGIN}` again"
    if isinstance(exc, api.PermissionDenied):
        return ("permission denied for the Application Default Credentials' account "
                f"({getattr(exc, 'message', exc)}); use an account with access to the project")
    return None


def operator_identity(credentials: object = None) -> str:
    """Who runs the tool: the credentials' service account, else gcloud's active account (the
    usual source of user ADC), else the local user name: an operator's identity for the audit
    trail, never customer data."""
    email = getattr(credentials, "service_account_email", None)
    if isinstance(email, str) and "@" in email:
        return email
    if shutil.which("gcloud"):
        try:
            account = subprocess.run(["gcloud", "config", "get-value", "account"],
                                     capture_output=True, text=True, timeout=20).stdout.strip()
            if "@" in account:
                return account
        except (OSError, subprocess.SubprocessError):
            pass
    return f"local:{os.environ.get('USER') or os.environ.get('USERNAME') or 'unknown'}"
