"""A shortened `sop demo`: two simulated robots and the learner for two minutes.

Checks what a user relies on: bags reach the learner's store, new weights are
published and go live only between episodes, no recorded episode is lost, and
the summary and plot are written, every held-out success with its 95 %
interval, on the deployment layouts and on the demonstrations'.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ros_helpers import chunk_versions

from sop_ros.demo.run import DemoOptions, run_demo


@pytest.mark.slow
def test_short_demo_runs_the_whole_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = DemoOptions(
        robots=2,
        minutes=2.0,
        out=tmp_path / "demo",
        seed=3,
        demos_per_task=3,
        base_steps=30,
        base_batch_size=8,
        publish_every_steps=10,
        judge_period_s=30.0,
        judge_episodes=1,
        judge_final_episodes=2,
        forgetting_episodes=1,
    )
    summary = run_demo(options)
    console = capsys.readouterr().out

    out = tmp_path / "demo"
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "sop_demo.png").stat().st_size > 10_000
    assert summary["episodes_recorded"] >= 4
    assert summary["episodes_missing_from_store"] == []  # every recorded episode reached the store
    assert summary["episodes_stored"] == summary["episodes_recorded"]
    assert len(summary["published_versions"]) >= 2
    # The base and the last published weights were evaluated alone, on every task.
    judged = summary["evaluations"]
    assert judged[0]["version"] == "v0000" and judged[-1]["version"] == summary["published_versions"][-1]
    assert all(len(e["success"]) == 3 for e in judged)
    assert summary["seed"] == 3 and summary["conditions"] == "deployment"

    # Every evaluation carries its episodes and Wilson interval; the final comparison its changes.
    for evaluation in judged:
        for rate in evaluation["success"].values():
            low, high = rate["ci95"]
            assert rate["episodes"] >= 1 and 0.0 <= low <= rate["rate"] <= high <= 1.0
    heldout = summary["heldout"]
    assert heldout["after"] == summary["published_versions"][-1]
    for conditions, episodes in (("deployment", 2), ("demonstrations", 1)):
        for task, row in heldout[conditions].items():
            if task != "mean":
                assert row["before"]["episodes"] == row["after"]["episodes"] == episodes
            low, high = row["change"]["ci95"]
            assert low <= row["change"]["change"] <= high
            assert row["change"]["verdict"] in ("up", "down", "within noise")
    assert "policy alone, held-out deployment layouts (2 per task, 95 % CI" in console
    assert "policy alone, held-out demonstrations layouts (1 per task, 95 % CI" in console

    stored = sorted(p for p in (out / "store").glob("*/*/*") if (p / "metadata.yaml").exists())
    used = set()
    for bag in stored:
        versions = chunk_versions(bag)
        assert len(versions) <= 1, (bag.name, versions)  # weights never changed mid-episode
        used |= versions
    assert len(used - {"v0000"}) >= 1, used  # robots ran weights the learner published
    logs = "".join(p.read_text() for p in (out / "logs").glob("robot_*.log"))
    assert logs.count("between episodes; swap stalled") + logs.count("at the episode end; swap stalled") >= 2
