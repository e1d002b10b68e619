"""Cold start: importing each entry point in a fresh interpreter, and the deployed dependencies'
size.

Each run is a new `python` process that loads the entry point the way functions-framework does
(`importlib` from the source file, as module `main`) with settings pointing nowhere reachable
(no network is touched at import), and reports the seconds spent and which heavy packages ended
up in `sys.modules`. Three figures per entry point, median of the runs:

- `import_ms`: fresh interpreter, the whole import (functions-framework, Flask, our code, its
  dependencies), bytecode caches warm (the target row; after the first start of an instance
  the caches exist);
- `own_import_ms`: the same with functions-framework already imported, as the Cloud Functions
  runtime has done before it loads the source: what our module adds;
- `no_bytecode_cache_ms`: the whole import compiling every module from source (an empty
  cache directory each run): the worst case.

The bulk entry point is loaded with the GCP backend selected (GOOGLE_CLOUD_PROJECT and emulator
hosts set), as deployed: it builds the Firestore client at import.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"realtime": ROOT / "realtime" / "main.py", "bulk": ROOT / "bulk" / "main.py"}

HEAVY = (
    "google.cloud.firestore", "google.cloud.pubsub", "google.cloud.pubsub_v1", "grpc",
    "google.protobuf", "google.api_core", "google.auth", "commercetools", "marshmallow",
    "pydantic", "pydantic_settings", "requests", "requests_oauthlib", "urllib3", "flask",
    "cloudevents",
    "functions_framework", "gunicorn", "watchdog",
)
FORBIDDEN_IN_REALTIME = ("google.cloud.firestore", "google.cloud.pubsub", "google.cloud.pubsub_v1")

_BASE_ENV = {
    "CONNECTOR_ENV_FILE": os.devnull,
    "CTP_PROJECT_KEY": "bench-project",
    "CTP_CLIENT_ID": "bench-client",
    "CTP_CLIENT_SECRET": "bench-secret",
    "CTP_API_URL": "https://api.europe-west1.gcp.commercetools.com",
    "CTP_AUTH_URL": "https://auth.europe-west1.gcp.commercetools.com",
    "KLAVIYO_API_KEY": "pk_bench_not_a_key",
    "LOG_LEVEL": "WARNING",
}
_GCP_ENV = {
    "GOOGLE_CLOUD_PROJECT": "bench-cold-start",
    "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
    "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",
}
_CLEARED = ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
            "K_SERVICE", "BULK_BACKEND", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")

_PROBE = """
import json, sys, time, importlib.util
if sys.argv[2] == "preload":
    import functions_framework  # the runtime has imported it before loading the source
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("main", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["main"] = module
spec.loader.exec_module(module)
seconds = time.perf_counter() - start
heavy = json.loads(sys.argv[3])
print(json.dumps({"seconds": seconds, "modules": len(sys.modules),
                  "loaded": [name for name in heavy if name in sys.modules]}))
"""


def _env(entry: str, cache_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(_BASE_ENV)
    if entry == "bulk":
        env.update(_GCP_ENV)
    env["PYTHONPYCACHEPREFIX"] = cache_dir
    env["PYTHONPATH"] = str(ROOT)
    return env


def _probe(entry: str, cache_dir: str, *, preload: bool = False,
           importtime: bool = False) -> tuple[dict[str, Any], str]:
    args = [sys.executable] + (["-X", "importtime"] if importtime else []) + [
        "-c", _PROBE, str(ENTRY_POINTS[entry]), "preload" if preload else "-", json.dumps(HEAVY)]
    done = subprocess.run(args, env=_env(entry, cache_dir), cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"importing {entry} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _top_imports(stderr: str, count: int = 8) -> list[dict[str, Any]]:
    """The slowest top-level imports from `-X importtime` (cumulative, ms)."""
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and not m.group(3):  # imported by the entry point itself, not nested
            rows.append({"module": m.group(4), "cumulative_ms": round(int(m.group(2)) / 1000, 1)})
    rows.sort(key=lambda r: -r["cumulative_ms"])
    return rows[:count]


def measure_entry(entry: str, runs: int = 5) -> dict[str, Any]:
    warm = tempfile.mkdtemp(prefix="bench-pycache-")
    try:
        _probe(entry, warm)  # fills the bytecode cache (not counted)
        full = [_probe(entry, warm)[0] for _ in range(runs)]
        own = [_probe(entry, warm, preload=True)[0] for _ in range(runs)]
        _, importtime = _probe(entry, warm, importtime=True)
        cold = []
        for _ in range(max(1, runs // 2)):
            empty = tempfile.mkdtemp(prefix="bench-pycache-cold-")
            try:
                cold.append(_probe(entry, empty)[0])
            finally:
                shutil.rmtree(empty, ignore_errors=True)
    finally:
        shutil.rmtree(warm, ignore_errors=True)
    loaded = full[-1]["loaded"]
    return {
        "entry_point": str(ENTRY_POINTS[entry].relative_to(ROOT)),
        "runs": runs,
        "import_ms": round(statistics.median(r["seconds"] for r in full) * 1000, 1),
        "import_ms_runs": [round(r["seconds"] * 1000, 1) for r in full],
        "own_import_ms": round(statistics.median(r["seconds"] for r in own) * 1000, 1),
        "no_bytecode_cache_ms": round(statistics.median(r["seconds"] for r in cold) * 1000, 1),
        "modules": full[-1]["modules"],
        "heavy_modules": loaded,
        "firestore_or_pubsub": [m for m in FORBIDDEN_IN_REALTIME if m in loaded],
        "slowest_imports": _top_imports(importtime),
    }


# ---- installed size of the runtime dependencies -----------------------------------------------


def _requirement_names(path: Path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(line)
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_sizes(requirements: Path = ROOT / "requirements.txt") -> dict[str, Any]:
    """Bytes on disk (site-packages, from each distribution's RECORD) of requirements.txt and
    everything it pulls in (markers and extras evaluated), in the running interpreter's venv."""
    from importlib import metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]

    wanted: dict[str, set[str]] = {}
    queue = [Requirement(r) for r in _requirement_names(requirements)]
    while queue:
        req = queue.pop()
        name = _canonical(req.name)
        extras = set(req.extras)
        if name in wanted and extras <= wanted[name]:
            continue
        wanted[name] = wanted.get(name, set()) | extras
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        for spec in dist.requires or []:
            dep = Requirement(spec)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e})
                                         for e in (wanted[name] or {""})):
                queue.append(dep)

    sizes: dict[str, int] = {}
    for name in wanted:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        total = 0
        for file in dist.files or []:
            if str(file).startswith(".."):  # scripts in bin/, not site-packages
                continue
            path = Path(str(file.locate()))
            if path.is_file():
                total += path.stat().st_size
        sizes[dist.metadata["Name"]] = total
    top = sorted(sizes.items(), key=lambda kv: -kv[1])
    return {
        "packages": len(sizes),
        "megabytes": round(sum(sizes.values()) / 1e6, 1),
        "largest": [{"package": n, "megabytes": round(b / 1e6, 1)} for n, b in top[:8]],
        "method": "sum of the RECORD-listed files in site-packages of requirements.txt's "
                  "dependency closure (this venv)",
    }


def run(*, runs: int = 5, entries: Iterable[str] = ("realtime", "bulk"),
        progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for entry in entries:
        progress(f"cold start {entry}: {runs} runs")
        results[entry] = measure_entry(entry, runs)
    progress("installed size of the runtime dependencies")
    results["dependencies"] = dependency_sizes()
    return results
