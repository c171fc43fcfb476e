"""`make demo` on a fresh machine installs the service's own dependencies only; `make test`
adds the dev extra on top (checked with make's dry run, nothing is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def dry_run(target: str, venv: Path) -> list[str]:
    out = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if "pip install" in line]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_demo_installs_runtime_dependencies_only(tmp_path: Path) -> None:
    demo = dry_run("demo", tmp_path / "venv")
    assert any(line.endswith("-e .") for line in demo)
    assert not any("[dev]" in line for line in demo)
    assert any("'.[dev]'" in line for line in dry_run("unit", tmp_path / "venv"))
