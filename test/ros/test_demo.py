"""A shortened `sop demo`: two simulated robots and the learner for two minutes.

Checks what a user relies on: bags reach the learner's store, new weights are
published and go live only between episodes, no recorded episode is lost, and
the summary and plot are written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ros_helpers import chunk_versions

from sop_ros.demo.run import DemoOptions, run_demo


@pytest.mark.slow
def test_short_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    options = DemoOptions(
        robots=2,
        minutes=2.0,
        out=tmp_path / "demo",
        demos_per_task=3,
        base_steps=30,
        base_batch_size=8,
        publish_every_steps=10,
        judge_period_s=30.0,
        judge_episodes=1,
        judge_final_episodes=1,
    )
    summary = run_demo(options)

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

    stored = sorted(p for p in (out / "store").glob("*/*/*") if (p / "metadata.yaml").exists())
    used = set()
    for bag in stored:
        versions = chunk_versions(bag)
        assert len(versions) <= 1, (bag.name, versions)  # weights never changed mid-episode
        used |= versions
    assert len(used - {"v0000"}) >= 1, used  # robots ran weights the learner published
    logs = "".join(p.read_text() for p in (out / "logs").glob("robot_*.log"))
    assert logs.count("between episodes; swap stalled") + logs.count("at the episode end; swap stalled") >= 2
