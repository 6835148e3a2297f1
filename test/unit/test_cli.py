from __future__ import annotations

from pathlib import Path

import pytest

from sop_ros.cli import build_parser, main
from sop_ros.core.policy import make_policy
from sop_ros.sim.policy import sim_policy_config
from sop_ros.simlab.demonstrations import record_demonstrations


def test_help_lists_every_subcommand(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for command in (
        "demo",
        "experiment",
        "robot",
        "learner",
        "train-offline",
        "params",
        "info",
        "checkpoint",
    ):
        assert command in out


def test_train_offline_turns_bags_into_weights_a_robot_loads(tmp_path: Path, capsys) -> None:
    record_demonstrations(tmp_path / "demos", episodes_per_task=1)
    out = tmp_path / "base.safetensors"
    code = main(
        ["train-offline", "--bags", str(tmp_path / "demos"), "--out", str(out), "--steps", "3", "--sim"]
    )
    assert code == 0 and out.is_file()
    assert f"trainable weights written to {out}" in capsys.readouterr().out
    robot = make_policy(sim_policy_config())
    robot.load_trainable(out)  # same config: accepted
    assert robot.active_version == "v0000"


def test_train_offline_explains_an_empty_directory(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code = main(["train-offline", "--bags", str(tmp_path / "empty"), "--out", str(tmp_path / "w"), "--sim"])
    assert code == 1
    assert "empty" in capsys.readouterr().err


def test_experiment_explains_bad_arms_settings_and_empty_reports(tmp_path: Path, capsys) -> None:
    assert main(["experiment", "--size", "reduced", "--arms", "bogus", "--out", str(tmp_path / "a")]) == 1
    assert "unknown arms ['bogus']" in capsys.readouterr().err
    assert main(["experiment", "--size", "reduced", "--set", "nope=1", "--out", str(tmp_path / "b")]) == 1
    assert "unknown study settings ['nope']" in capsys.readouterr().err
    assert main(["experiment", "--report-only", "--out", str(tmp_path)]) == 1
    assert "no arm results" in capsys.readouterr().err
    assert main(["experiment", "--size", "reduced", "--seed", "0,x", "--out", str(tmp_path / "c")]) == 1
    assert "expected integers separated by commas" in capsys.readouterr().err
    assert main(["experiment", "--size", "reduced", "--seed", "1,1", "--out", str(tmp_path / "d")]) == 1
    assert "seeds must be distinct" in capsys.readouterr().err
    out = ["--out", str(tmp_path / "e")]
    assert main(["experiment", "--arms", "hg_dagger_1", "--budget-min", "hg_dagger_4=90", *out]) == 1
    assert "budgets given for arms ['hg_dagger_4'] that this run does not include" in capsys.readouterr().err
    assert main(["experiment", "--budget-min", "hg_dagger_1=long", *out]) == 1
    assert "expected MINUTES or ARM=MINUTES" in capsys.readouterr().err
