"""The README documents every setting and keeps its quick start to the two make targets."""

from __future__ import annotations

import re
from pathlib import Path

from shared.config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in README]
    assert not missing, f"README lacks {missing}"


def test_quick_start_is_the_two_make_commands() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^make (\w+)", quick_start, flags=re.M)
    assert commands == ["run", "test"]
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert re.search(r"^run: install\n\t\$\(PY\) -m deploy\.local", makefile, flags=re.M)
    # `make test` lints first (ruff, mypy), then runs the suite
    assert re.search(r"^lint: install\n\t\$\(VENV\)/bin/ruff check \.\n\t\$\(VENV\)/bin/mypy ",
                     makefile, flags=re.M)
    assert re.search(r"^test: lint\n\t\$\(PY\) -m pytest$", makefile, flags=re.M)
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "make test" in ci
