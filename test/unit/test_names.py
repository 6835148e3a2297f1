"""Every list of names the package spells in several files is derived from one, and stays so.

Nodes: the registry; setup.py, ``sop robot`` and the launch files take them from it.
Algorithms and sim conditions: their registries; the ``sop demo`` choices read them.
``sop demo`` defaults: DemoOptions. Topic and service names: core/topics.py.
The fleet: one setting per process (test/ros/test_fleet_setting.py checks the robot's nodes).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.metadata
import importlib.util
import re
from pathlib import Path

import pytest

from sop_ros.cli import build_parser
from sop_ros.core import topics
from sop_ros.core.config import flatten_config
from sop_ros.demo.options import DemoOptions
from sop_ros.learner.algorithms import ALGORITHMS
from sop_ros.nodes import registry
from sop_ros.sim.tasks import CONDITIONS
from sop_ros.transport import IngestConfig, UploadConfig, WeightsFetcherConfig, WeightsPublisherConfig

ROOT = Path(__file__).resolve().parents[2]
NODE_SOURCES = sorted((ROOT / "sop_ros" / "nodes").glob("*.py"))
NAMED_CALLS = {"create_service", "create_client", "create_publisher", "create_subscription"}


def test_every_node_is_in_exactly_one_group_and_has_its_module() -> None:
    groups = [registry.ROBOT_NODES, registry.LINK_NODES, registry.SIM_NODES, registry.CLOUD_NODES]
    grouped = [name for group in groups for name in group]
    assert sorted(grouped) == sorted(registry.NODES), "a node is in no group, or in two"
    for spec in registry.NODES.values():
        assert importlib.util.find_spec(spec.module) is not None, spec.module


def test_setup_installs_the_registry_nodes_and_spells_none_itself() -> None:
    setup_source = (ROOT / "setup.py").read_text()
    for spec in registry.NODES.values():
        assert spec.module not in setup_source, f"setup.py names {spec.module} itself"
    installed = {
        ep.name: ep.value
        for ep in importlib.metadata.distribution("sop_ros").entry_points
        if ep.group == "console_scripts" and ep.name != "sop"
    }
    assert installed == {spec.executable: f"{spec.module}:main" for spec in registry.NODES.values()}


def test_the_robot_launch_file_starts_the_registry_groups() -> None:
    from test_launch_files import started_nodes

    tree = ast.parse((ROOT / "launch" / "robot.launch.py").read_text())
    ours = [executable for package, executable in started_nodes(tree) if package == "sop_ros"]
    assert sorted(ours) == sorted([*registry.ROBOT_NODES, *registry.LINK_NODES, *registry.SIM_NODES])


def _action(command: str, dest: str) -> argparse.Action:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in subparsers.choices[command]._actions if a.dest == dest)


def test_cli_choices_come_from_the_registries() -> None:
    assert list(_action("demo", "algorithm").choices) == sorted(ALGORITHMS)
    assert list(_action("train-offline", "algorithm").choices) == sorted(ALGORITHMS)
    assert list(_action("demo", "conditions").choices) == list(CONDITIONS)


def test_train_offline_leaves_the_learner_defaults_alone() -> None:
    args = build_parser().parse_args(["train-offline", "--bags", "b", "--out", "o"])
    assert not hasattr(args, "algorithm") and not hasattr(args, "batch_size")
    args = build_parser().parse_args(["train-offline", "--bags", "b", "--out", "o", "--algorithm", "recap"])
    assert args.algorithm == "recap"


def test_demo_defaults_come_from_demo_options() -> None:
    args = build_parser().parse_args(["demo"])
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(DemoOptions) if hasattr(args, f.name)}
    assert set(given) >= {"robots", "algorithm", "minutes", "out", "seed", "conditions", "base_steps"}
    assert DemoOptions(**{**given, "out": Path(given["out"])}) == DemoOptions()


def _literal_names(path: Path) -> list[str]:
    """``create_service(T, "a/b", ...)``-style calls that spell their name instead of using topics."""
    found = []
    for call in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr in NAMED_CALLS
            and len(call.args) >= 2
            and isinstance(call.args[1], ast.Constant)
        ):
            found.append(f"{path.name}:{call.lineno}: {call.args[1].value!r}")
    return found


def test_nodes_take_topic_and_service_names_from_core_topics() -> None:
    spelled = [line for path in NODE_SOURCES for line in _literal_names(path)]
    assert not spelled, "names spelled outside sop_ros/core/topics.py:\n" + "\n".join(spelled)
    services = {topics.EPISODE_START, topics.EPISODE_SUCCEED, topics.EPISODE_FAIL, topics.EPISODE_ABORT}
    assert len(services | {topics.POLICY_STAGE, topics.POLICY_ACTIVATE}) == 6


def test_the_check_finds_a_spelled_name(tmp_path: Path) -> None:
    node = tmp_path / "x_node.py"
    node.write_text('self.create_service(Trigger, "episode/start", cb)\n')
    assert _literal_names(node) == ["x_node.py:1: 'episode/start'"]


@pytest.mark.parametrize("config", [UploadConfig, IngestConfig, WeightsFetcherConfig, WeightsPublisherConfig])
def test_transport_configs_take_the_fleet_from_their_owner(config: type) -> None:
    assert "fleet" not in {s.name for s in flatten_config(config())}
    assert config(fleet="f1").fleet == "f1"


def _launch_argument(path: Path, name: str) -> ast.Call | None:
    for call in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "DeclareLaunchArgument"
            and isinstance(call.args[0], ast.Constant)
            and call.args[0].value == name
        ):
            return call
    return None


@pytest.mark.parametrize("name", ["cloud.launch.py", "fleet_sim.launch.py"])
def test_launch_algorithm_arguments_match_the_registry(name: str) -> None:
    # Launch files do not import the registry (it loads torch): they are compared with it instead.
    from sop_ros.learner.builder import LearnerSettings

    call = _launch_argument(ROOT / "launch" / name, "algorithm")
    assert call is not None, f"{name} declares no algorithm argument"
    values = {k.arg: k.value.value for k in call.keywords if isinstance(k.value, ast.Constant)}
    assert values["default_value"] == LearnerSettings().algorithm
    described = set(re.findall(r"\w+", values["description"]))
    assert set(ALGORITHMS) <= described, f"{name}: the description lists {values['description']!r}"


def test_the_sim_fleet_launch_gives_robots_the_indicator_of_each_algorithm() -> None:
    from sop_ros.learner.algorithms import _lookup

    tree = ast.parse((ROOT / "launch" / "fleet_sim.launch.py").read_text())
    table = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "INFERENCE_ADVANTAGE"
    )
    assert table == {name: _lookup(name)[1].inference_advantage for name in ALGORITHMS}
