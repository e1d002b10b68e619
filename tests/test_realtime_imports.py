"""What the realtime function's import loads (fresh interpreter, as functions-framework loads it):
no Firestore or Pub/Sub client, not the commercetools SDK's typed client, and not its OAuth stack
before the first token is needed. Times are for `python -m bench`, not asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NEVER = ("google.cloud.firestore", "google.cloud.pubsub", "google.cloud.pubsub_v1",
         "commercetools.platform.client")
NOT_AT_IMPORT = ("commercetools.base_client", "requests_oauthlib", "oauthlib", "marshmallow")

_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("main", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["main"] = module
spec.loader.exec_module(module)
print(json.dumps(sorted(sys.modules)))
"""


def test_realtime_import_loads_neither_gcp_clients_nor_the_sdk_typed_client() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")}
    env.update({
        "CONNECTOR_ENV_FILE": os.devnull, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING",
        "CTP_PROJECT_KEY": "shop", "CTP_CLIENT_ID": "id", "CTP_CLIENT_SECRET": "secret",
        "CTP_API_URL": "https://api.europe-west1.gcp.commercetools.com",
        "CTP_AUTH_URL": "https://auth.europe-west1.gcp.commercetools.com",
        "KLAVIYO_API_KEY": "pk_test",
    })
    done = subprocess.run([sys.executable, "-c", _PROBE, str(ROOT / "realtime" / "main.py")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    modules = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "requests" in modules and "shared.commercetools.auth" in modules  # the probe works
    assert not [m for m in NEVER if m in modules]
    assert not [m for m in NOT_AT_IMPORT if m in modules]
