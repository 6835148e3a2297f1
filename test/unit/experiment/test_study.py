from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from sop_ros.core.errors import ConfigError
from sop_ros.experiment.fleet import SimFleet
from sop_ros.experiment.run import ExperimentOptions, run_experiment
from sop_ros.storage import validate_bag


@pytest.mark.slow
def test_reduced_study_runs_every_stage_and_writes_the_report(tmp_path: Path) -> None:
    arms = ("hg_dagger_1", "recap_4")
    markdown = run_experiment(ExperimentOptions(size="reduced", arms=arms, out=tmp_path, seeds=(0, 1)))

    summary = json.loads((tmp_path / "results.json").read_text())
    assert set(summary["arms"]) == {*arms, "base"}
    assert [run["seed"] for run in summary["arms"]["recap_4"]["runs"]] == [0, 1]
    runs = [*arms, *(f"{name}_seed1" for name in arms)]
    for name in runs:
        result = json.loads((tmp_path / name / "result.json").read_text())
        assert result["config"]["seed"] == (1 if name.endswith("_seed1") else 0)
        # 60 simulated seconds at one update per second, published every 25.
        assert result["learner_steps"] == 60 and result["versions"] == 2
        bags = sorted((tmp_path / name / "spool" / "ready").iterdir())
        assert len(bags) == len(result["episodes"]) > 0
        assert {validate_bag(bag).robot_id for bag in bags} == {
            f"robot_{i + 1}" for i in range(result["arm"]["robots"])
        }
        versions = [e["version"] for e in result["evaluations"]]
        assert versions[0] == "v0000" and result["final"]["version"] == "v0002"
        for evaluation in [*result["evaluations"], result["final"]]:
            assert all(0.0 <= s <= 1.0 for s in evaluation["success"].values())
    # More robots, more experience in the same simulated time.
    one = json.loads((tmp_path / "hg_dagger_1" / "result.json").read_text())
    four = json.loads((tmp_path / "recap_4" / "result.json").read_text())
    assert len(four["episodes"]) > 2 * len(one["episodes"])
    text = markdown.read_text()
    assert "## Fleet scaling" in text and "SOP + RECAP, 4 robots" in text
    assert (tmp_path / "success_over_time.png").stat().st_size > 10_000
    assert (tmp_path / "success_per_task.png").stat().st_size > 10_000


@pytest.mark.slow
def test_resumed_arm_continues_where_it_stopped(tmp_path: Path) -> None:
    options = ExperimentOptions(size="reduced", arms=("hg_dagger_1",), out=tmp_path, budget_min=0.5)
    run_experiment(options)
    first = json.loads((tmp_path / "hg_dagger_1" / "result.json").read_text())
    assert first["learner_steps"] == 30

    # An episode that ended after the state was saved (the run was stopped from outside) is replayed.
    later = tmp_path / "hg_dagger_1" / "spool" / "ready" / "robot_1-09999"
    later.mkdir()
    run_experiment(replace(options, budget_min=1.0, resume=True))
    assert not later.exists()
    second = json.loads((tmp_path / "hg_dagger_1" / "result.json").read_text())
    # The learner went on from its checkpoint at step 30 (v0001) and published once more at 50;
    # one started over would have published at 25 and 50 (v0003).
    assert second["learner_steps"] == 60 and second["versions"] == 2
    assert second["evaluations"][: len(first["evaluations"])] == first["evaluations"]
    assert second["evaluations"][len(first["evaluations"])] == first["final"]
    assert second["episodes"][: len(first["episodes"])] == first["episodes"]
    assert len(second["episodes"]) > len(first["episodes"])
    bags = sorted((tmp_path / "hg_dagger_1" / "spool" / "ready").iterdir())
    assert len(bags) == len(second["episodes"])
    assert second["seconds"] > first["seconds"]

    with pytest.raises(ConfigError, match="already ran 1 simulated minutes"):
        run_experiment(replace(options, budget_min=1.0, resume=True))
    with pytest.raises(ConfigError, match=r"other settings \(lr\)"):
        run_experiment(replace(options, budget_min=2.0, resume=True, overrides={"lr": 0.01}))
    shutil.rmtree(tmp_path / "hg_dagger_1" / "learner")
    with pytest.raises(ConfigError, match="checkpoint is at step 0, its saved state at step 60"):
        run_experiment(replace(options, budget_min=2.0, resume=True))


@pytest.mark.slow
def test_arm_stopped_from_outside_resumes_from_its_last_evaluation(tmp_path: Path, monkeypatch) -> None:
    tick = SimFleet.tick

    def killed_at_45_s(fleet: SimFleet) -> None:
        if fleet.now_s >= 45.0:
            raise KeyboardInterrupt("job time limit")
        tick(fleet)

    options = ExperimentOptions(size="reduced", arms=("hg_dagger_1",), out=tmp_path, budget_min=1.0)
    with monkeypatch.context() as patch:
        patch.setattr(SimFleet, "tick", killed_at_45_s)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(options)
    assert not (tmp_path / "hg_dagger_1" / "result.json").exists()

    run_experiment(replace(options, resume=True))
    result = json.loads((tmp_path / "hg_dagger_1" / "result.json").read_text())
    # Continued from the state saved at the 30 s evaluation: nothing counted twice, nothing lost.
    assert [e["time_s"] for e in result["evaluations"]] == [0.0, 30.0]
    assert result["learner_steps"] == 60 and result["versions"] == 2
    bags = sorted((tmp_path / "hg_dagger_1" / "spool" / "ready").iterdir())
    assert len(bags) == len(result["episodes"]) > 0
    assert [row[0] for row in result["episodes"]] == sorted(row[0] for row in result["episodes"])


def test_an_arm_can_have_a_budget_of_its_own(tmp_path: Path) -> None:
    options = ExperimentOptions(
        size="reduced",
        arms=("hg_dagger_1",),
        out=tmp_path,
        budget_min=1.0,
        arm_budget_min={"hg_dagger_1": 0.25},
    )
    run_experiment(options)
    result = json.loads((tmp_path / "hg_dagger_1" / "result.json").read_text())
    assert result["config"]["budget_s"] == 15.0 and result["learner_steps"] == 15


@pytest.mark.slow
def test_a_learner_per_robot_gives_every_fleet_size_the_same_updates_per_second_and_robot(
    tmp_path: Path,
) -> None:
    options = ExperimentOptions(
        size="reduced",
        arms=("hg_dagger_2",),
        out=tmp_path,
        budget_min=0.25,
        overrides={"learner_per_robot": True},
    )
    markdown = run_experiment(options)
    result = json.loads((tmp_path / "hg_dagger_2" / "result.json").read_text())
    assert result["learner_steps"] == 30  # 15 simulated seconds, 1 update per second for each of 2 robots
    assert "1 update per simulated second for each robot" in markdown.read_text()
    assert "--set learner_per_robot=True" in markdown.read_text()


def test_the_offline_only_control_arm_spends_the_same_updates_without_fleet_data(tmp_path: Path) -> None:
    # The paper's control: as much learner compute, on the demonstrations alone.
    options = ExperimentOptions(size="reduced", arms=("offline_only_4",), out=tmp_path, budget_min=0.25)
    markdown = run_experiment(options)
    result = json.loads((tmp_path / "offline_only_4" / "result.json").read_text())
    assert result["learner_steps"] == 15 and result["config"]["conditions"] == "deployment"
    assert len(result["episodes"]) > 0  # the fleet worked (on deployment layouts) ...
    assert not list((tmp_path / "offline_only_4" / "store").rglob("metadata.yaml"))  # ... unseen
    assert "control: offline data only" in markdown.read_text()
