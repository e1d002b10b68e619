"""Serve both functions on localhost, as Cloud Functions would run them.

    python -m deploy.local [--host 127.0.0.1] [--port 8080]

`/sync/...` goes to the bulk HTTP function (its page tasks run in-process in local mode) and
`/realtime` takes Pub/Sub CloudEvents for the realtime function. Settings come from the
environment or `.env`; when one is missing this prints which and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_app():  # type: ignore[no-untyped-def]
    import functions_framework
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    realtime = functions_framework.create_app("handle_ct_message", str(ROOT / "realtime" / "main.py"))
    bulk = functions_framework.create_app("sync_api", str(ROOT / "bulk" / "main.py"))
    return DispatcherMiddleware(bulk, {"/realtime": realtime})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    from shared.errors import ConfigError

    try:
        app = build_app()
    except ConfigError as exc:
        print(f"{exc}\nSet them in the environment or in .env (see .env.example).", file=sys.stderr)
        return 2

    from werkzeug.serving import run_simple

    print(
        f"realtime: POST http://{args.host}:{args.port}/realtime  (Pub/Sub CloudEvents)\n"
        f"bulk:     POST http://{args.host}:{args.port}/sync/<customers|orders|categories|products>",
        file=sys.stderr,
    )
    run_simple(args.host, args.port, app, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
