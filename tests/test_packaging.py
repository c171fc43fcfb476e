"""Every third-party module the service imports is a runtime dependency in pyproject.toml.

A module that only the dev extra installs works in the test venv and fails in the Docker
image (which installs the runtime dependencies alone): orjson once did exactly that.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_distributions() -> set[str]:
    """Dependencies plus the optional runtime extras (``nats``), never the dev extra: an
    extra's modules are imported only when configured, behind a clear ConfigError."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra, extra_specs in project["optional-dependencies"].items():
        if extra != "dev":
            specs.extend(extra_specs)
    names = set()
    for spec in specs:
        match = re.match(r"[A-Za-z0-9_.\-]+", spec)
        assert match is not None, spec
        names.add(_normalized(match.group(0)))
    return names


def _imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "ivr_bridge").rglob("*.py"):
        if "_proto" in path.parts:
            continue  # generated; imports grpc and protobuf only
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "ivr_bridge"}


def test_every_imported_package_is_a_runtime_dependency() -> None:
    runtime = _runtime_distributions()
    owners = packages_distributions()
    missing: dict[str, list[str]] = {}
    for module in sorted(_imported_top_level_modules()):
        dists = {_normalized(d) for d in owners.get(module, [])}
        assert dists, f"{module} is imported but no installed distribution provides it"
        if module == "audioop":
            continue  # the stdlib before 3.13, audioop-lts after (a marked dependency)
        if not dists & runtime:
            missing[module] = sorted(dists)
    assert not missing, f"imported by ivr_bridge but not in [project] dependencies: {missing}"


def test_the_compiled_frame_scanner_is_built() -> None:
    """The C extension is optional (no compiler: the build warns and the bridge runs the
    Python path), so a failed build would pass unnoticed; CI machines have a compiler."""
    import os

    import pytest

    from ivr_bridge import wsfast

    if os.environ.get("IVR_BRIDGE_PURE_PYTHON", "") not in ("", "0"):
        pytest.skip("turned off by IVR_BRIDGE_PURE_PYTHON")
    if not wsfast.AVAILABLE and os.environ.get("CI") != "true":
        pytest.skip("ivr_bridge/_wsfast.c was not built here (no C compiler?)")
    assert wsfast.AVAILABLE, "ivr_bridge/_wsfast.c did not build: see pip's output"
