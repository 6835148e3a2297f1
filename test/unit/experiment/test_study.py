from __future__ import annotations

import json
from pathlib import Path

import pytest

from sop_ros.experiment.run import ExperimentOptions, run_experiment
from sop_ros.storage import validate_bag


@pytest.mark.slow
def test_reduced_study_runs_every_stage_and_writes_the_report(tmp_path: Path) -> None:
    arms = ("hg_dagger_2", "hg_dagger_1", "recap_4")
    markdown = run_experiment(ExperimentOptions(size="reduced", arms=arms, out=tmp_path, jobs=1))

    summary = json.loads((tmp_path / "results.json").read_text())
    assert set(summary["arms"]) == {*arms, "base"}
    for name in arms:
        result = json.loads((tmp_path / name / "result.json").read_text())
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
    two = json.loads((tmp_path / "hg_dagger_2" / "result.json").read_text())
    assert len(two["episodes"]) > 1.5 * len(one["episodes"])
    text = markdown.read_text()
    assert "## Fleet scaling" in text and "SOP + RECAP, 4 robots" in text
    assert (tmp_path / "success_over_time.png").stat().st_size > 10_000
    assert (tmp_path / "success_per_task.png").stat().st_size > 10_000
