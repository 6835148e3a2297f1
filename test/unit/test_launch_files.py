"""Launch files checked without the launch packages (not on PyPI).

Read as source: every node they start exists as an executable of its
package, every params file they name exists and only configures nodes that
exist, and every argument carries a description. (test/launch runs
robot.launch.py for real where launch_pytest is installed.)
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from sop_ros.nodes import registry

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))


def setup_executables() -> set[str]:
    # setup.py installs the registry's nodes as console scripts (test_node_registry checks it).
    return set(registry.NODES)


def exec_depends() -> set[str]:
    tree = ET.parse(ROOT / "package.xml")
    return {e.text for tag in ("exec_depend", "depend") for e in tree.getroot().iter(tag)}


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
    ]


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def string_tuples(tree: ast.Module) -> dict[str, tuple[str, ...]]:
    """Module-level NAME = ("a", "b") constants, and tuples imported from the node registry."""
    out: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == registry.__name__:
            out.update({a.asname or a.name: getattr(registry, a.name) for a in node.names})
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
            values = node.value.elts
            if all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in values):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        out[target.id] = tuple(v.value for v in values)
    return out


def iterated_names(node: ast.expr, constants: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    """The strings a comprehension runs over: a known tuple name, or a tuple of starred ones."""
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if not isinstance(node, ast.Tuple):
        return None
    parts = [
        constants.get(e.value.id) if isinstance(e, ast.Starred) and isinstance(e.value, ast.Name) else None
        for e in node.elts
    ]
    return tuple(n for part in parts if part is not None for n in part) if None not in parts else None


def started_nodes(tree: ast.Module) -> list[tuple[str, str]]:
    """(package, executable) of every Node(...) the file starts."""
    constants = string_tuples(tree)
    # A Node(...) in a comprehension takes its executable from the names the comprehension runs over.
    loop_names: dict[int, dict[str, tuple[str, ...]]] = {}
    for comp in ast.walk(tree):
        if isinstance(comp, ast.ListComp | ast.GeneratorExp | ast.SetComp):
            sources = {
                g.target.id: names
                for g in comp.generators
                if isinstance(g.target, ast.Name) and (names := iterated_names(g.iter, constants)) is not None
            }
            for call in calls(comp.elt, "Node"):
                loop_names[id(call)] = sources
    found = []
    for call in calls(tree, "Node"):
        package = keyword(call, "package")
        executable = keyword(call, "executable")
        assert isinstance(package, ast.Constant), ast.unparse(call)
        sources = loop_names.get(id(call), {})
        if isinstance(executable, ast.Constant):
            found.append((package.value, executable.value))
        elif isinstance(executable, ast.Name) and executable.id in sources:
            found.extend((package.value, e) for e in sources[executable.id])
        else:
            pytest.fail(f"cannot resolve executable {ast.unparse(executable)}")
    return found


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_node_is_a_real_executable(path: Path) -> None:
    tree = ast.parse(path.read_text())
    nodes = started_nodes(tree)
    assert nodes, "the launch file starts no node"
    ours = setup_executables()
    for package, executable in nodes:
        if package == "sop_ros":
            assert executable in ours, (
                f"{path.name} starts sop_ros {executable}, which setup.py does not install"
            )
        else:
            assert package in exec_depends(), (
                f"{path.name} starts {package}, not an exec_depend of package.xml"
            )


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_argument_has_a_description(path: Path) -> None:
    tree = ast.parse(path.read_text())
    arguments = calls(tree, "DeclareLaunchArgument")
    assert arguments, "no launch arguments declared"
    for call in arguments:
        description = keyword(call, "description")
        assert isinstance(description, ast.Constant) and len(description.value) > 10, ast.unparse(
            call.args[0]
        )


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_params_files_exist_and_configure_started_nodes(path: Path) -> None:
    tree = ast.parse(path.read_text())
    started = {executable for package, executable in started_nodes(tree) if package == "sop_ros"}
    named = set(re.findall(r'"config"\s*/\s*"([\w.]+\.yaml)"', path.read_text()))
    for name in named:
        params = ROOT / "config" / name
        assert params.is_file(), f"{path.name} names config/{name}, which does not exist"
        if "params" not in name:
            continue
        sections = {key.rsplit("/", 1)[-1] for key in yaml.safe_load(params.read_text())}
        assert sections <= started, (
            f"config/{name} configures {sections - started}, not started by {path.name}"
        )


def test_every_launch_file_is_checked() -> None:
    assert {p.name for p in LAUNCH_FILES} >= {"robot.launch.py"}
