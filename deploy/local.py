"""Serve both functions on localhost, as Cloud Functions would run them.

    python -m deploy.local [--host 127.0.0.1] [--port 8080] [--demo]

`GET /` is the operator console, `/sync/...` the bulk HTTP function (its page tasks run
in-process, job state in BULK_LOCAL_STATE_FILE) and `/realtime` takes Pub/Sub CloudEvents for the
realtime function. Settings come from the environment or `.env`. Three modes:

- **demo**, when no connection setting is there at all (or with `--demo`): a commercetools
  sandbox with a sample shop and a Klaviyo preview sink are served on the same port, and the
  connector is pointed at them; nothing leaves the machine.
- **preview**, with `KLAVIYO_PREVIEW=true`: your real commercetools project, while every Klaviyo
  request goes to the preview sink (no Klaviyo key needed).
- otherwise the settings as given; a missing or invalid one prints one line naming every problem
  and exits with status 2.

The bulk job state stays local even when GOOGLE_CLOUD_PROJECT is exported (set BULK_BACKEND=gcp
to use Firestore and Pub/Sub).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONNECTION_SETTINGS = ("CTP_PROJECT_KEY", "CTP_CLIENT_ID", "CTP_CLIENT_SECRET", "CTP_API_URL",
                       "CTP_AUTH_URL", "CTP_SCOPES", "KLAVIYO_API_KEY")
_QUIET = re.compile(r'"(GET /sync/\w+ |GET /_demo/preview |[A-Z]+ /sandbox/)')


def _dotenv() -> dict[str, str]:
    path = Path(os.environ.get("CONNECTOR_ENV_FILE", ".env"))
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k.upper(): v or "" for k, v in dotenv_values(path).items()}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def choose_mode(environ: Mapping[str, str], dotenv: Mapping[str, str], *, demo: bool = False
                ) -> str:
    """`demo` when nothing about the connections is set (a variable present but empty counts as
    set: the user has started configuring), `preview` with KLAVIYO_PREVIEW, else `live`."""
    settings = {**dotenv, **{k.upper(): v for k, v in environ.items()}}
    if settings.get("K_SERVICE") or settings.get("FUNCTION_TARGET"):
        return "live"  # on Cloud Functions a missing setting must stop the start, never demo
    if demo:
        return "demo"
    if _truthy(settings.get("KLAVIYO_PREVIEW")):
        return "preview"
    if not any(name in settings for name in CONNECTION_SETTINGS):
        return "demo"
    return "live"


def _at_root(app: Any) -> Any:
    """`/realtime` (no trailing slash) reaches the function's root instead of a 308 redirect."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("PATH_INFO"):
            environ["PATH_INFO"] = "/"
        return app(environ, start_response)

    return wrapped


def build_app(sandbox: Any = None) -> Any:
    import functions_framework
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    realtime = functions_framework.create_app("handle_ct_message",
                                              str(ROOT / "realtime" / "main.py"))
    bulk = functions_framework.create_app("sync_api", str(ROOT / "bulk" / "main.py"))
    mounts: dict[str, Any] = {"/realtime": _at_root(realtime)}
    if sandbox is not None:
        sandbox.realtime = realtime
        mounts.update(sandbox.mounts())
    return DispatcherMiddleware(bulk, mounts)


def _banner(mode: str, base: str, sandbox: Any) -> str:
    lines = []
    if mode == "demo":
        lines += [
            "DEMO MODE: no connection settings found, so this runs a sample shop (commercetools "
            "sandbox) and a Klaviyo preview sink on this port. Nothing leaves this machine.",
            f"  sample shop: {', '.join(f'{n} {k}' for k, n in sandbox.shop_counts.items())}; "
            "set CTP_* and KLAVIYO_API_KEY (or .env) to run against your own accounts.",
        ]
    elif mode == "preview":
        lines.append("PREVIEW MODE (KLAVIYO_PREVIEW=true): your commercetools project is read; "
                     "every Klaviyo request goes to the local preview sink, none to Klaviyo.")
    lines += [
        f"console:  {base}/   (jobs, progress" + (", Klaviyo preview" if sandbox else "") + ")",
        f"bulk:     POST {base}/sync/<customers|orders|categories|products>",
        f"realtime: POST {base}/realtime  (Pub/Sub CloudEvents)",
    ]
    if mode == "demo":
        lines.append(f"change:   POST {base}/_demo/change  (the sandbox changes a customer, "
                     "order or product and delivers the subscription message to /realtime)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8080))
    parser.add_argument("--demo", action="store_true",
                        help="demo mode even when settings are present")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    dotenv = _dotenv()
    mode = choose_mode(os.environ, dotenv, demo=args.demo)
    if "BULK_BACKEND" not in os.environ and "BULK_BACKEND" not in dotenv:
        os.environ["BULK_BACKEND"] = "local"  # a gcloud user's GOOGLE_CLOUD_PROJECT stays unused

    connect_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    base = f"http://{connect_host}:{args.port}"
    sandbox = None
    if mode in ("demo", "preview"):
        from deploy.demo.sandbox import Sandbox

        sandbox = Sandbox(mode=mode, base_url=base, with_shop=mode == "demo")
        env = sandbox.environment()
        os.environ.update(env)
        os.environ["KLAVIYO_PREVIEW"] = "true"

    from shared.errors import ConfigError

    try:
        app = build_app(sandbox)
    except ConfigError as exc:
        print(f"{exc}\nSet them in the environment or in .env (see .env.example); with none of "
              "them set, `make run` starts the demo.", file=sys.stderr)
        return 2

    from werkzeug.serving import WSGIRequestHandler, make_server

    class Handler(WSGIRequestHandler):
        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            if not _QUIET.search(self.requestline and f'"{self.requestline}' or ""):
                super().log_request(code, size)

    try:
        server = make_server(args.host, args.port, app, threaded=True, request_handler=Handler)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; choose another "
              "port with `make run PORT=8090` (or --port)", file=sys.stderr)
        return 2
    print(_banner(mode, base, sandbox), file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill`: close the port, stop fakes
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if sandbox is not None:
            sandbox.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
