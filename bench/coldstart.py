"""Cold start: importing each entry point in a fresh interpreter, and the deployed dependencies'
size.

Each run is a new `python` process that loads the entry point the way functions-framework does
(`importlib` from the source file, as module `main`) with settings pointing nowhere reachable
(no network is touched at import), and reports the seconds spent and which heavy packages ended
up in `sys.modules`. The same is measured, in the same run and interleaved with them, for a
hello-world functions-framework function (one `@functions_framework.cloud_event` that does
nothing): `import_ratio` is an entry point's import time over the hello-world's, a figure that
carries from this machine to another (deployed, each millisecond is about three at 0.333 vCPU).
Three figures per entry point, median of the runs:

- `import_ms`: fresh interpreter, the whole import (functions-framework, Flask, our code, its
  dependencies), bytecode caches warm (after the first start of an instance the caches exist);
  `import_cpu_ms` the CPU time of the same import, which other processes on the machine do not
  inflate the way they do wall time (the target row is its ratio to the hello-world's);
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
HELLO = "hello"  # the baseline: a functions-framework function that does nothing
HELLO_SOURCE = """import functions_framework


@functions_framework.cloud_event
def hello(cloud_event):
    return None
"""

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
start, cpu = time.perf_counter(), time.process_time()
spec = importlib.util.spec_from_file_location("main", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["main"] = module
spec.loader.exec_module(module)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
heavy = json.loads(sys.argv[3])
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "modules": len(sys.modules),
                  "loaded": [name for name in heavy if name in sys.modules]}))
"""


def _env(entry: str, cache_dir: str, root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(_BASE_ENV)
    if entry == "bulk":
        env.update(_GCP_ENV)
    env["PYTHONPYCACHEPREFIX"] = cache_dir
    env["PYTHONPATH"] = str(root)
    return env


class Target:
    """An entry point to import: its name, source file and the tree it imports from."""

    def __init__(self, name: str, source: Path, root: Path = ROOT) -> None:
        self.name, self.source, self.root = name, source, root
        self.warm = tempfile.mkdtemp(prefix="bench-pycache-")

    def relative(self) -> str:
        try:
            return str(self.source.relative_to(self.root))
        except ValueError:
            return self.source.name

    def close(self) -> None:
        shutil.rmtree(self.warm, ignore_errors=True)


def _probe(target: Target, cache_dir: str | None = None, *, preload: bool = False,
           importtime: bool = False) -> tuple[dict[str, Any], str]:
    args = [sys.executable] + (["-X", "importtime"] if importtime else []) + [
        "-c", _PROBE, str(target.source), "preload" if preload else "-", json.dumps(HEAVY)]
    env = _env(target.name, cache_dir or target.warm, target.root)
    done = subprocess.run(args, env=env, cwd=target.root, capture_output=True,
                          text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"importing {target.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _top_imports(stderr: str, count: int = 8) -> list[dict[str, Any]]:
    """The slowest top-level imports from `-X importtime` (cumulative, ms)."""
    rows: list[dict[str, Any]] = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and not m.group(3):  # imported by the entry point itself, not nested
            rows.append({"module": m.group(4), "cumulative_ms": round(int(m.group(2)) / 1000, 1)})
    rows.sort(key=lambda r: -r["cumulative_ms"])
    return rows[:count]


def measure(targets: list[Target], runs: int = 5) -> dict[str, dict[str, Any]]:
    """Each figure's runs interleaved across the targets, so a busy moment of the machine
    weighs on all of them alike."""
    full: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    own: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    cold: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    importtime: dict[str, str] = {}
    for target in targets:
        _probe(target)  # fills the bytecode cache (not counted)
    for _ in range(runs):
        for target in targets:
            full[target.name].append(_probe(target)[0])
    for _ in range(runs):
        for target in targets:
            own[target.name].append(_probe(target, preload=True)[0])
    for target in targets:
        importtime[target.name] = _probe(target, importtime=True)[1]
    for _ in range(max(1, runs // 2)):
        for target in targets:
            empty = tempfile.mkdtemp(prefix="bench-pycache-cold-")
            try:
                cold[target.name].append(_probe(target, empty)[0])
            finally:
                shutil.rmtree(empty, ignore_errors=True)
    results = {}
    for target in targets:
        name = target.name
        loaded = full[name][-1]["loaded"]
        results[name] = {
            "entry_point": target.relative(),
            "runs": runs,
            "import_ms": round(statistics.median(r["seconds"] for r in full[name]) * 1000, 1),
            "import_ms_runs": [round(r["seconds"] * 1000, 1) for r in full[name]],
            "import_cpu_ms": round(
                statistics.median(r["cpu_seconds"] for r in full[name]) * 1000, 1),
            "own_import_ms": round(statistics.median(r["seconds"] for r in own[name]) * 1000, 1),
            "no_bytecode_cache_ms": round(
                statistics.median(r["seconds"] for r in cold[name]) * 1000, 1),
            "modules": full[name][-1]["modules"],
            "heavy_modules": loaded,
            "firestore_or_pubsub": [m for m in FORBIDDEN_IN_REALTIME if m in loaded],
            "slowest_imports": _top_imports(importtime[name]),
        }
    hello = results.get(HELLO)
    if hello:
        for name, figures in results.items():
            if name != HELLO:
                figures["import_ratio"] = round(figures["import_ms"] / hello["import_ms"], 2)
                figures["import_cpu_ratio"] = round(
                    figures["import_cpu_ms"] / hello["import_cpu_ms"], 2)
                figures["no_bytecode_cache_ratio"] = round(
                    figures["no_bytecode_cache_ms"] / hello["no_bytecode_cache_ms"], 2)
    return results


def hello_target(directory: Path) -> Target:
    source = directory / "main.py"
    source.write_text(HELLO_SOURCE)
    return Target(HELLO, source, ROOT)


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
    except ImportError:  # pip vendors it; mypy sees pip's copy of the class as another class
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]

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
    entries = list(entries)
    progress(f"cold start {', '.join(entries)} and a hello-world function: {runs} runs each, "
             "interleaved")
    with tempfile.TemporaryDirectory(prefix="bench-hello-") as directory:
        targets = [Target(entry, ENTRY_POINTS[entry]) for entry in entries]
        targets.append(hello_target(Path(directory)))
        try:
            results: dict[str, Any] = measure(targets, runs)
        finally:
            for target in targets:
                target.close()
    progress("installed size of the runtime dependencies")
    results["dependencies"] = dependency_sizes()
    return results
