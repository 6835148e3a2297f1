"""The packages listed under [tool.mypy] in pyproject.toml type-check with zero errors."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    # The checked paths and the strictness per package live in pyproject.toml alone.
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(PYPROJECT), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_checked_packages_have_no_type_errors() -> None:
    result = mypy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_every_package_is_checked_and_the_robot_side_layers_strictly() -> None:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["mypy"]
    checked = set(config["files"])
    modules = {f"sop_ros/{p.name}" for p in (ROOT / "sop_ros").iterdir() if p.suffix == ".py" or p.is_dir()}
    modules -= {"sop_ros/__init__.py", "sop_ros/py.typed", "sop_ros/__pycache__"}
    assert modules <= checked, f"not type-checked: {sorted(modules - checked)}"
    assert not [p for p in config.get("exclude", []) if "core" in p], "part of core is left unchecked"
    strict = [o for o in config["overrides"] if o.get("disallow_untyped_defs")]
    assert {"sop_ros.core.*", "sop_ros.storage.*", "sop_ros.transport.*"} <= {
        m for o in strict for m in o["module"]
    }


def test_the_check_catches_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def half(x: int) -> int:\n    return x / 2\n")
    result = mypy("--no-incremental", str(bad))
    assert result.returncode == 1 and "Incompatible return value type" in result.stdout, result.stdout
