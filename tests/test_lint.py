"""ruff and mypy, as configured in pyproject.toml, report nothing (#11).

They run here rather than as extra steps of `.ci/run`, which runs exactly the README's test
command. Both are in the ``test`` extra; a checkout without them skips these tests.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUFF_PATHS = ["nst_engine", "export", "gimp_plugin", "tests", "bench", "scripts"]


def _run(tool: str, *args: str) -> None:
    if importlib.util.find_spec(tool) is None:
        pytest.skip(f"{tool} is not installed (pip install -e '.[test]')")
    r = subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{tool} {' '.join(args)} found problems:\n{r.stdout}{r.stderr}"


def test_ruff() -> None:
    _run("ruff", "check", "--no-cache", "--output-format", "concise", *RUFF_PATHS)


def test_mypy() -> None:
    # files and settings from [tool.mypy]; the cache (git-ignored) makes a re-run take about a second
    _run("mypy", "--cache-dir", str(ROOT / ".mypy_cache"))
