"""Params files generated from the configs load back; typos and bad values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from sop_ros.cli import main
from sop_ros.core.errors import ConfigError
from sop_ros.nodes.params_file import check_params_file, params_yaml
from sop_ros.nodes.registry import NODES, console_scripts, node_spec

ROOT = Path(__file__).resolve().parents[2]


def test_generated_params_for_every_node_load_back(tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text("\n".join(params_yaml(name) for name in NODES))
    assert sorted(check_params_file(path)) == sorted(spec.node_name for spec in NODES.values())


def test_typos_and_bad_values_name_the_node_and_setting(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("/**/command_mux:\n  ros__parameters:\n    control_rate_hz: 0.5\n")
    with pytest.raises(ConfigError, match=r"node command_mux: control_rate_hz must be >= 1.0 Hz"):
        check_params_file(path)
    path.write_text("/**/recorder:\n  ros__parameters:\n    spool: /tmp\n")
    with pytest.raises(ConfigError, match=r"recorder has no parameter spool \(did you mean spool_dir\?\)"):
        check_params_file(path)
    with pytest.raises(ConfigError, match="unknown node 'recordr'; choose one of"):
        node_spec("recordr")


def test_sop_robot_refuses_unknown_names_before_starting_anything(tmp_path: Path, capsys) -> None:
    assert main(["robot", "--set", "policy:replan_perod_s=1.0"]) == 1
    assert "policy has no parameter replan_perod_s (did you mean replan_period_s?)" in capsys.readouterr().err
    assert main(["robot", "--set", "polcy:replan_period_s=1.0"]) == 1
    assert "unknown node 'polcy'" in capsys.readouterr().err
    assert main(["robot", "--set", "command_mux:safety.on_violation=ignore"]) == 1
    assert "command_mux: on_violation must be one of clip, hold" in capsys.readouterr().err
    path = tmp_path / "sim_time.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    use_sim_time: true\n"
        "/**/teleop:\n  ros__parameters:\n    use_sim_time: true\n    source: pad\n"
    )
    assert check_params_file(path) == ["teleop"]
    path.write_text("/**:\n  ros__parameters:\n    source: pad\n")
    with pytest.raises(ConfigError, match="section /\\*\\* sets source, which not every node has"):
        check_params_file(path)
    path = tmp_path / "typo.yaml"
    path.write_text("/**/teleop:\n  ros__parameters:\n    sauce: pad\n")
    assert main(["robot", "--params-file", str(path)]) == 1
    assert "teleop has no parameter sauce" in capsys.readouterr().err


def test_every_node_module_is_registered_and_installed() -> None:
    modules = {p.stem for p in (ROOT / "sop_ros" / "nodes").glob("*_node.py")}
    assert modules == {spec.module.rsplit(".", 1)[-1] for spec in NODES.values()}
    # setup.py installs console_scripts(); test/unit/test_names.py checks the installed entry points.
    assert set(console_scripts()) == {f"{spec.executable} = {spec.module}:main" for spec in NODES.values()}


def test_committed_params_files_are_valid() -> None:
    files = sorted((ROOT / "config").glob("*params*.yaml"))
    for path in files:
        check_params_file(path)


def test_sop_params_prints_a_node_section(capsys) -> None:
    assert main(["params", "recorder"]) == 0
    assert "/**/recorder:" in capsys.readouterr().out
    assert main(["params", "nope"]) == 1
    assert "unknown node 'nope'" in capsys.readouterr().err


def test_sim_params_file_matches_what_sop_robot_builds() -> None:
    from sop_ros.nodes.params_file import node_sections
    from sop_ros.nodes.robot_graph import sim_parameters

    in_code = sim_parameters("any", spool_dir="spool")
    in_file = node_sections(ROOT / "config" / "sim_params.yaml")
    for node, values in in_file.items():
        for key, value in values.items():
            if key in in_code.get(node, {}):
                assert in_code[node][key] == value, (
                    f"{node}.{key}: file {value!r}, code {in_code[node][key]!r}"
                )
    assert in_file["policy"]["policy.action_names"] == in_code["policy"]["policy.action_names"]


def test_parameter_reference_is_up_to_date() -> None:
    from sop_ros.nodes.params_file import params_markdown

    committed = (ROOT / "docs" / "parameters.md").read_text()
    assert committed == params_markdown(sorted(NODES)), (
        "regenerate: sop params --markdown > docs/parameters.md"
    )
