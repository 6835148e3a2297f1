from __future__ import annotations

import json
from pathlib import Path

import pytest

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
